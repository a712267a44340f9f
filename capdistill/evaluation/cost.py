"""What a model costs: parameters and decoding latency per video."""
import time

import torch


def count_parameters(model):
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def latency_per_video(model, inputs, repeats=10, warmup=2, **decode):
    """Median seconds per video of ``model.generate`` on a batch of ``inputs``."""
    batch = next(iter(inputs.values())).shape[0]
    for _ in range(warmup):
        model.generate(inputs, **decode)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.generate(inputs, **decode)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] / batch
