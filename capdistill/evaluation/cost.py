"""What a model costs: parameters, FLOPs and decoding latency per video."""
import time

import torch


def count_parameters(model):
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def deployed_parameters(model):
    """Parameters of what is deployed: the student (``student_state_dict``) or all."""
    from capdistill.models.distillers import deployed_model
    model = deployed_model(model)
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
    (encoder + prefix + one token per step until every caption ends). Matrix products,
    attention and recurrent layers are counted (FlopCounterMode's registry plus
    :func:`extra_flop_formulas`), 2 FLOPs per multiply-add; element-wise work is not.
    """
    batch = tokens.shape[0]
    out = {}
    # FlopCounterMode's module tracker trips over no-grad tensors that require grad
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        out = _count(model, inputs, tokens, batch)
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
    return out


def _count(model, inputs, tokens, batch):
    out = {}
    with flop_counter() as counter:
        model.caption_logits(inputs, tokens)
    out['forward'] = counter.get_total_flops() / batch
    with flop_counter() as counter:
        model.generate(inputs, strategy='greedy', use_cache=True)
    out['greedy'] = counter.get_total_flops() / batch
    return out


def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    """``softmax(q k^T) v``: two matrix products over every (query, key) pair."""
    *lead, s_q, d_qk = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    n = 1
    for size in lead:
        n *= size
    return 2 * n * s_q * s_k * (d_qk + d_v)


def _rnn_layer_flops(input_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs):
    """One direction of one recurrent layer: input and hidden projections per step."""
    steps = 1
    for size in input_shape[:-1]:  # (time, batch) in either order
        steps *= size
    return 2 * steps * (w_ih_shape[0] * w_ih_shape[1] + w_hh_shape[0] * w_hh_shape[1])


def extra_flop_formulas():
    """FlopCounterMode formulas for CPU kernels it does not count by itself.

    PyTorch's registry knows the GPU attention kernels and matrix products, but on
    CPU scaled-dot-product attention runs ``_scaled_dot_product_flash_attention_for_cpu``
    and LSTMs/GRUs run ``mkldnn_rnn_layer``; without these both count as 0.
    """
    aten = torch.ops.aten
    formulas = {aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops}
    if hasattr(aten, 'mkldnn_rnn_layer'):
        formulas[aten.mkldnn_rnn_layer] = _rnn_layer_flops
    return formulas


def flop_counter():
    """A ``FlopCounterMode`` that also counts CPU attention and recurrent layers."""
    from torch.utils.flop_counter import FlopCounterMode
    return FlopCounterMode(display=False, custom_mapping=extra_flop_formulas())


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
