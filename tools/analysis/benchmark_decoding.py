"""Decoding cost against its floor, measured side by side in one process.

Rows printed (each a ratio of two things timed in interleaved repeats, so a busy machine
slows both sides alike; ``beam-vs-rows`` and ``batch1`` take the median of the per-repeat
ratios):

* ``beam-vs-rows``: beam ``K`` at batch ``B`` against greedy at batch ``K*B`` (the same
  number of rows through the head, both held to every step) for each
  ``--batch-sizes`` B; goal <= 1.2x;
* ``batch1``: cached greedy against the reference loop (the whole head over a
  full-length caption buffer for every token) at batch 1, tokens checked identical,
  where one cached step's time goes (output layer, attention, the rest), and the floor
  of a cached step on this machine: the head's weight bytes read per token over the
  memory bandwidth one thread gets (timed on the output layer's matrix-vector product),
  with the speedup over the reference loop that this floor allows;
* ``lengths`` (with a trained ``checkpoint`` and ``--data-split``): cost per video of
  greedy and beam on real inputs against the same decode forced to ``max_len`` steps
  (EOS banned), beside the mean caption length: finished rows leave the computation,
  so the time ratio follows the length ratio.

Times are CPU seconds of this process by default (``--clock cpu``; one thread): on a shared
machine a process waiting for a core does not count, which wall-clock time (``--clock
wall``) would. Random weights are fine for the first two rows (no caption ends early:
the worst case).

Example::

    OMP_NUM_THREADS=1 python tools/analysis/benchmark_decoding.py \\
        configs/sftcap/sftcap_shared_clip-b32_1xb64-20e_msrvtt.py --batch-sizes 1 8 32 128
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint', nargs='?', help='trained full checkpoint (for --data-split)')
    p.add_argument('--rows', nargs='+', default=['beam-vs-rows', 'batch1'],
                   choices=['beam-vs-rows', 'batch1', 'lengths'])
    p.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8, 32, 128])
    p.add_argument('--beam-size', type=int, default=5)
    p.add_argument('--repeats', type=int, default=5, help='interleaved repeats (median)')
    p.add_argument('--num-frames', type=int, default=None)
    p.add_argument('--data-split', default='test', help='split for the lengths row')
    p.add_argument('--max-videos', type=int, default=256, help='videos for the lengths row')
    p.add_argument('--threads', type=int, default=1, help='torch.set_num_threads')
    p.add_argument('--clock', choices=['cpu', 'wall'], default='cpu',
                   help='cpu: CPU time of this process (waiting for a core does not count)')
    p.add_argument('--out', help='also write the results as json here')
    p.add_argument('--cfg-options', nargs='+', default=[], help='key=value overrides')
    return p.parse_args(argv)


CLOCK = dict(cpu=time.process_time, wall=time.perf_counter)
clock = CLOCK['cpu']


def side_by_side(fns, repeats, warmup=1, raw=False):
    """Median seconds of each callable in ``fns`` (dict), run interleaved; with ``raw``
    also every repeat's seconds (for :func:`paired_ratio`)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = clock()
            fn()
            times[k].append(clock() - start)
    medians = {k: statistics.median(v) for k, v in times.items()}
    return (medians, times) if raw else medians


def paired_ratio(times, a, b):
    """Median over repeats of ``a``'s time / ``b``'s time in the same repeat: the two
    ran back to back, so a load change between repeats cancels out."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def beam_vs_rows(model, args, frames):
    """Beam K at batch B vs greedy at batch K*B: rows through the head are equal."""
    from capdistill.evaluation.cost import dummy_batch
    out = {}
    k = args.beam_size
    for b in args.batch_sizes:
        small, _ = dummy_batch(model, b, frames, seed=b)
        big, _ = dummy_batch(model, k * b, frames, seed=b)
        reps = max(1, args.repeats if b * k <= 160 else args.repeats // 2 + 1)
        # EOS is held back to the last step in both, so both run every step: with
        # untrained weights caption lengths are arbitrary, and the row is about the
        # cost per step of the same number of rows
        full = dict(min_len=model.max_len + 1)
        t, raw = side_by_side(dict(
            beam=lambda: model.generate(small, strategy='beam', beam_size=k, **full),
            greedy=lambda: model.generate(big, strategy='greedy', **full)), reps, raw=True)
        row = dict(beam_s=t['beam'], greedy_rows_s=t['greedy'],
                   ratio=paired_ratio(raw, 'beam', 'greedy'), repeats=reps)
        out[b] = row
        print(f'beam-vs-rows  B={b:>3}: beam{k} at batch {b} {t["beam"] * 1e3:8.1f} ms, '
              f'greedy at batch {k * b} {t["greedy"] * 1e3:8.1f} ms, '
              f'ratio {row["ratio"]:.2f}x (median of {reps} paired repeats; goal <= 1.2x)',
              flush=True)
    return out


def step_breakdown(model, inputs, repeats):
    """Where a cached greedy decode at batch 1 goes, from one profile: the output layer
    and word pick (every op with the vocabulary as a dimension, the int8 shortlist's
    product included; the word lookup too, one row), the blocks' other matrix products,
    attention kernels, all other tensor ops, and the time outside tensor ops (Python,
    the decoding loop; profiler overhead inflates it somewhat)."""
    from torch.profiler import ProfilerActivity, profile
    gen = lambda: model.generate(inputs, strategy='greedy')  # noqa: E731
    gen()
    vocab = model.head.vocab_size
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = clock()
        for _ in range(repeats):
            gen()
        wall = (clock() - start) / repeats
    matmul = ('aten::addmm', 'aten::mm', 'aten::bmm', 'aten::matmul', 'aten::mv',
              'aten::_addmm_activation')
    out_layer = blocks = attn = ops = 0.0
    for e in prof.key_averages(group_by_input_shape=True):
        us = e.self_cpu_time_total
        ops += us
        dims = [d for shape in (e.input_shapes or []) for d in (shape or [])]
        if vocab in dims or e.key.startswith('quantized::'):
            out_layer += us
        elif e.key in matmul:
            blocks += us
        elif 'scaled_dot_product' in e.key or 'flash_attention' in e.key:
            attn += us
    per = 1e6 * repeats
    parts = dict(decode_s=wall, output_layer_s=out_layer / per, matmul_s=blocks / per,
                 attention_s=attn / per, other_ops_s=(ops - out_layer - blocks - attn) / per)
    parts['outside_ops_s'] = max(0.0, wall - ops / per)
    parts['vocab'] = vocab
    head = model.head
    # the int8 shortlist against the float output layer on a peaked hidden state (one
    # word far ahead, as in a trained model); with flat scores it gives way to floats
    from capdistill.models.captioners.decoding import Int8Shortlist
    w = head.output_weight
    if vocab >= 8192 and Int8Shortlist.supported(w):  # timed below the default's size too
        short = Int8Shortlist.of(w)
        peak = w[vocab // 2:vocab // 2 + 1] / w[vocab // 2].norm() * w.shape[1] ** 0.5
        t = side_by_side(dict(
            exact=lambda: head._logits(peak).argmax(-1),
            int8=lambda: short.argmax(head.norm(peak))), 20)
        parts.update(pick_float_s=t['exact'], pick_int8_s=t['int8'])
    return parts


def weight_floor(head, steps):
    """Bytes of weights a cached step reads, the bandwidth one thread gets, and the
    resulting floor for a decode of ``steps`` tokens.

    Every step reads each weight matrix of the head once (a matrix-vector product at
    batch 1), and the tied output layer whole; of the word embedding's input side only
    one row, and of the positions one. The bandwidth is timed on the output layer's
    own matrix-vector product (the largest read of a step).
    """
    w = head.output_weight
    skip = {id(w), id(getattr(head, 'word_pos', None))}
    nbytes = sum(p.numel() * p.element_size() for p in head.parameters() if id(p) not in skip)
    nbytes += w.numel() * w.element_size()
    h = torch.randn(1, w.shape[1])
    # the very product a step runs (torch.mv takes a slower kernel for this layout)
    t_mv = side_by_side(dict(mv=lambda: torch.nn.functional.linear(h, w)), 30)['mv']
    bandwidth = w.numel() * w.element_size() / t_mv
    return dict(bytes_per_token=nbytes, bandwidth_Bps=bandwidth,
                floor_s=steps * nbytes / bandwidth)


def batch1(model, args, frames):
    from capdistill.evaluation.cost import dummy_batch
    inputs, _ = dummy_batch(model, 1, frames, seed=1)
    t, raw = side_by_side(dict(
        cached=lambda: model.generate(inputs, strategy='greedy', use_cache=True),
        reference=lambda: model.generate(inputs, strategy='greedy', use_cache=False)),
        args.repeats, raw=True)
    same = torch.equal(model.generate(inputs, strategy='greedy', use_cache=True),
                       model.generate(inputs, strategy='greedy', use_cache=False))
    parts = step_breakdown(model, inputs, args.repeats)
    steps = int(model.generate(inputs, strategy='greedy').shape[1])
    parts.update(weight_floor(model.head, steps))
    row = dict(cached_s=t['cached'], reference_s=t['reference'],
               speedup=paired_ratio(raw, 'reference', 'cached'), identical=same, **parts)
    row['floor_speedup'] = t['reference'] / row['floor_s']
    print(f'batch1: cached greedy {t["cached"] * 1e3:.1f} ms, reference loop '
          f'{t["reference"] * 1e3:.1f} ms, speedup {row["speedup"]:.1f}x (goal >= 10x), '
          f'tokens identical={same}', flush=True)
    ops_s = sum(parts[k] for k in ('output_layer_s', 'matmul_s', 'attention_s', 'other_ops_s'))
    share = {k: 100 * parts[k] / ops_s for k in ('output_layer_s', 'matmul_s', 'attention_s',
                                                  'other_ops_s')}
    print(f'batch1 breakdown of a cached decode ({steps} steps, vocabulary {parts["vocab"]}; '
          f'shares of the profiled tensor-op time): output layer '
          f'{share["output_layer_s"]:.0f}%, other matrix products {share["matmul_s"]:.0f}%, '
          f'attention {share["attention_s"]:.0f}%, other tensor ops {share["other_ops_s"]:.0f}%; '
          f'outside tensor ops (Python, profiler) {parts["outside_ops_s"] * 1e3:.1f} ms of '
          f'{parts["decode_s"] * 1e3:.1f} ms', flush=True)
    print(f'batch1 floor: a cached step reads {row["bytes_per_token"] / 1e6:.1f} MB of weights; '
          f'one thread reads {row["bandwidth_Bps"] / 1e9:.1f} GB/s (output layer matrix-vector '
          f'product), so {steps} steps take >= {row["floor_s"] * 1e3:.1f} ms and the reference '
          f'loop ({t["reference"] * 1e3:.1f} ms) can be beaten by at most '
          f'{row["floor_speedup"]:.1f}x', flush=True)
    if 'pick_int8_s' in parts:
        print(f'batch1 output layer per step, peaked scores: float logits + argmax '
              f'{parts["pick_float_s"] * 1e3:.2f} ms, int8 shortlist '
              f'{parts["pick_int8_s"] * 1e3:.2f} ms '
              f'({parts["pick_float_s"] / parts["pick_int8_s"]:.1f}x)', flush=True)
    return row


def lengths(model, args):
    """Cost per video on real inputs vs the same decode forced to full length."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from capdistill.registry import DATASETS
    cfg = Config.fromfile(args.config)
    ds_cfg = cfg.get(f'{args.data_split}_dataloader').dataset
    with DefaultScope.overwrite_default_scope('capdistill'):
        ds = DATASETS.build(ds_cfg)
    key = model.feature_key
    vids, seen = [], set()
    for i in range(len(ds)):
        item = ds[i]
        vid = item['data_samples']['video_id'] if 'data_samples' in item else i
        if vid in seen:
            continue
        seen.add(vid)
        vids.append(item)
        if len(vids) >= args.max_videos:
            break
    feats = torch.stack([torch.as_tensor(v['inputs'][key]) for v in vids]).float()
    inputs = {key: feats, f'{key}_mask': torch.ones(feats.shape[:2], dtype=torch.bool)}
    eos = model.tokenizer.eos_id
    full = model.max_len + 1
    out = {}
    for strategy, kw in (('greedy', {}), (f'beam{args.beam_size}',
                                          dict(beam_size=args.beam_size))):
        s = 'greedy' if not kw else 'beam'
        ids = model.generate(inputs, strategy=s, **kw)
        mean_len = float(((ids != eos).sum(1) + 1).clamp(max=full).float().mean())
        t = side_by_side(dict(
            actual=lambda: model.generate(inputs, strategy=s, **kw),
            forced=lambda: model.generate(inputs, strategy=s, min_len=full, **kw)),
            args.repeats)
        n = feats.shape[0]
        row = dict(videos=n, mean_len=mean_len, max_len=full,
                   per_video_s=t['actual'] / n, forced_per_video_s=t['forced'] / n,
                   time_ratio=t['actual'] / t['forced'], length_ratio=mean_len / full)
        out[strategy] = row
        print(f'lengths {strategy}: {n} videos, mean caption {mean_len:.1f} of {full} tokens '
              f'(ratio {row["length_ratio"]:.2f}); {row["per_video_s"] * 1e3:.2f} ms/video vs '
              f'{row["forced_per_video_s"] * 1e3:.2f} ms/video forced to full length '
              f'(ratio {row["time_ratio"]:.2f})', flush=True)
    return out


def main(argv=None):
    args = parse_args(argv)
    global clock
    clock = CLOCK[args.clock]
    torch.set_num_threads(args.threads)
    from benchmark import build
    model, _, _ = build(args.config, args.checkpoint, args.cfg_options)
    frames = args.num_frames or min(15, model.visual_encoder.pos.shape[1])
    results = dict(config=args.config, threads=args.threads, clock=args.clock)
    with torch.no_grad():
        if 'beam-vs-rows' in args.rows:
            results['beam_vs_rows'] = beam_vs_rows(model, args, frames)
        if 'batch1' in args.rows:
            results['batch1'] = batch1(model, args, frames)
        if 'lengths' in args.rows:
            results['lengths'] = lengths(model, args)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == '__main__':
    from capdistill.utils.cli import friendly_main
    friendly_main(main)()
