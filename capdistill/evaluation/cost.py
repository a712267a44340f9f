"""What a model costs: parameters, FLOPs and decoding latency per video."""
import time

import torch


def count_parameters(model):
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def deployed_parameters(model):
    """Parameters of what is deployed: the student (``student_state_dict``) or all."""
    model = getattr(model, 'student', model)
    if hasattr(model, 'student_state_dict'):
        return sum(v.numel() for v in model.student_state_dict().values())
    return count_parameters(model)


def dummy_batch(model, batch_size, num_frames=15, seed=0):
    """Random inputs and a random caption of full length for a captioner."""
    g = torch.Generator().manual_seed(seed)
    key = model.feature_key
    dim = model.visual_encoder.in_dim
    inputs = {key: torch.randn(batch_size, num_frames, dim, generator=g),
              f'{key}_mask': torch.ones(batch_size, num_frames, dtype=torch.bool)}
    vocab = model.tokenizer.vocab_size
    tokens = torch.randint(3, vocab, (batch_size, model.max_len + 2), generator=g)
    tokens[:, 0] = model.tokenizer.bos_id
    tokens[:, -1] = model.tokenizer.eos_id
    return inputs, tokens


@torch.no_grad()
def flops_per_video(model, inputs, tokens):
    """FLOPs per video counted by ``torch.utils.flop_counter.FlopCounterMode``.

    Returns ``dict(forward=..., greedy=...)``: one teacher-forced forward over
    ``tokens`` (encoder + head over the whole caption) and one cached greedy decode
    (encoder + prefix + one token per step until every caption ends). Only matrix
    products and attention are counted (FlopCounterMode's registry), 2 FLOPs per MAC.
    """
    from torch.utils.flop_counter import FlopCounterMode
    batch = tokens.shape[0]
    out = {}
    # FlopCounterMode's module tracker trips over no-grad tensors that require grad
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        out = _count(model, inputs, tokens, batch, FlopCounterMode)
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
    return out


def _count(model, inputs, tokens, batch, FlopCounterMode):
    out = {}
    with FlopCounterMode(display=False) as counter:
        model.caption_logits(inputs, tokens)
    out['forward'] = counter.get_total_flops() / batch
    with FlopCounterMode(display=False) as counter:
        model.generate(inputs, strategy='greedy', use_cache=True)
    out['greedy'] = counter.get_total_flops() / batch
    return out


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
