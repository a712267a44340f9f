"""Decoding cost against its floor, measured side by side in one process.

Rows printed (each a ratio of two things timed in interleaved repeats, so a busy machine
slows both sides alike; ``beam-vs-rows`` and ``batch1`` take the median of the per-repeat
ratios):

* ``beam-vs-rows``: beam ``K`` at batch ``B`` against greedy at batch ``K*B`` (the same
  number of rows through the head, both held to every step) for each
  ``--batch-sizes`` B; goal <= 1.2x; where greedy picks words without scoring them all
  (a wide vocabulary), also against greedy scoring every word;
* ``batch1``: cached greedy against the reference loop (the whole head over a
  full-length caption buffer for every token) one video at a time (the first
  ``--batch1-videos`` videos of ``--data-split`` with a trained ``checkpoint``, else one
  random video), tokens checked identical; where the time goes (output layer, word
  pickers, attention, the rest, as shares of the profiled tensor ops; and a wall-clock
  split per video: encoder, decoder set-up, steps, word picks, the loop); which picker
  chose each word and how many output rows it read; and the floor of a cached step on
  this machine: the weight bytes a step reads over the memory bandwidth one thread gets
  (timed on the product a step scores the output layer with), with the speedup over the
  reference loop that it allows;
* ``lengths`` (with a trained ``checkpoint`` and ``--data-split``): cost per video of
  greedy and beam on real inputs against the same decode forced to ``max_len`` steps
  (EOS banned), beside the mean caption length: finished rows leave the computation,
  so the time ratio follows the length ratio;
* ``normaliser``: why beam search cannot use greedy's vocabulary groups. Beam needs each
  row's log-softmax normaliser; the groups bound what the rows left unread can add to it
  (``size * exp(bound)`` per group). For the hidden states of greedy's captions (the
  split's first ``--max-videos`` videos with a ``checkpoint``, else random videos), the
  share of the output rows a step would still have to read for that bound to fall within
  ``--normaliser-tol`` of the normaliser (the exact one given: the most favourable case),
  beside the rows greedy's own pick reads and the words that hold all but that share of
  the normaliser (a floor for any way of skipping words, bounds or not);
* ``products``: a step's output-layer product for ``--product-rows`` rows, plain
  (``h @ W.T``) against taken the other way round (``(W @ h.T).T``, one row padded to
  two), on the model's output layer and any ``--product-shapes``, beside the one
  ``output_product`` takes: whether its rule (``word_pick.TALL_PRODUCT_ROWS`` and
  ``TALL_PRODUCT_MIN_BYTES``, set from measurements) pays on this CPU.

Times are CPU seconds of this process by default (``--clock cpu``; one thread): on a shared
machine a process waiting for a core does not count, which wall-clock time (``--clock
wall``) would. Random weights are fine for the first two rows (no caption ends early:
the worst case).

Example::

    OMP_NUM_THREADS=1 python tools/analysis/benchmark_decoding.py \\
        configs/sftcap/sftcap_shared_clip-b32_1xb64-20e_msrvtt.py --batch-sizes 1 8 32 128
"""
import argparse
import contextlib
import json
import os
import re
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    from capdistill.utils.cli import add_cfg_options, int_at_least
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint', nargs='?', help='trained full checkpoint (for --data-split)')
    p.add_argument('--rows', nargs='+', default=['beam-vs-rows', 'batch1'],
                   choices=['beam-vs-rows', 'batch1', 'lengths', 'normaliser', 'products'])
    p.add_argument('--normaliser-tol', type=float, nargs='+', default=[1e-8, 1e-2],
                   help='normaliser row: relative bounds on the unread rows\' share of the '
                        'normaliser (1e-8: below float32 rounding)')
    p.add_argument('--product-rows', type=int_at_least(1), nargs='+', default=[1, 2, 5, 8],
                   help='products row: rows per product')
    p.add_argument('--product-shapes', nargs='+', default=[], metavar='WORDSxWIDTH',
                   help="products row: output layers to time besides the model's (random "
                        'weights), e.g. 16384x256 49408x512')
    p.add_argument('--batch-sizes', type=int_at_least(1), nargs='+', default=[1, 8, 32, 128])
    p.add_argument('--beam-size', type=int_at_least(1), default=5)
    p.add_argument('--repeats', type=int_at_least(1), default=5,
                   help='interleaved repeats (median)')
    p.add_argument('--num-frames', type=int_at_least(1), default=None)
    p.add_argument('--data-split', default='test',
                   help='split for the lengths row and, with a checkpoint, the batch1 row')
    p.add_argument('--max-videos', type=int_at_least(1), default=256,
                   help='videos for the lengths and normaliser rows')
    p.add_argument('--batch1-videos', type=int_at_least(1), default=None,
                   help='videos decoded one at a time for the batch1 row (needs a checkpoint; '
                        'default 8)')
    p.add_argument('--threads', type=int_at_least(1), default=1, help='torch.set_num_threads')
    p.add_argument('--clock', choices=['cpu', 'wall'], default='cpu',
                   help='cpu: CPU time of this process (waiting for a core does not count)')
    p.add_argument('--out', help='also write the results as json here')
    add_cfg_options(p)
    args = p.parse_args(argv)
    bad = [t for t in args.normaliser_tol if not 0 < t < 1]
    if bad:
        p.error(f'--normaliser-tol {bad[0]:g}: a share of the normaliser, between 0 and 1 '
                '(e.g. 1e-8)')
    bad = [x for x in args.product_shapes if not re.fullmatch(r'[1-9]\d*x[1-9]\d*', x)]
    if bad:
        p.error(f'--product-shapes {bad[0]}: expected WORDSxWIDTH, e.g. 16384x256')
    if args.batch1_videos is not None and not args.checkpoint:
        p.error('--batch1-videos needs a trained checkpoint (without one the batch1 row '
                'decodes one random video)')
    return args


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


def eos_held_back(model, logit=-1e4):
    """A copy of ``model`` whose EOS logit is ``logit`` for every hidden state, so a beam
    search over it runs every step and still makes its EOS test at each one (``min_len``
    would tell the search that no beam can end, and it skips the test).

    The head's logits are ``norm(x) @ W.T`` with a LayerNorm ``norm``, whose output is
    ``gamma * z + beta`` with ``z`` summing to zero: the row ``c / gamma`` scores
    ``c * sum(beta / gamma)`` whatever ``x``. EOS is never fed back, so its (tied) input
    embedding does not matter. A LayerNorm without bias (random weights) gets a tiny one
    (``1e-3 * gamma``) in the copy first: the copy's other logits move a little, its
    cost does not.
    """
    import copy
    held = copy.deepcopy(model)
    norm, weight = held.head.norm, held.head.output_weight
    gamma, beta = norm.weight.detach(), norm.bias.detach()
    inv = torch.where(gamma.abs() > 1e-6, 1 / gamma, torch.zeros_like(gamma))
    with torch.no_grad():
        if abs(float((beta * inv).sum())) < 1e-6:
            beta.add_(1e-3 * gamma)
        weight[held.tokenizer.eos_id] = inv * (logit / float((beta * inv).sum()))
    return held


def beam_vs_rows(model, args, frames):
    """Beam K at batch B vs greedy at batch K*B: rows through the head are equal."""
    from capdistill.evaluation.cost import dummy_batch
    out = {}
    k = args.beam_size
    held = eos_held_back(model)
    full = model.max_len + 1

    def beam(inputs):
        # EOS held back in the weights: the search still makes its EOS test every step
        ids = held.generate(inputs, strategy='beam', beam_size=k)
        if ids.shape[1] != full:
            raise RuntimeError(f'beam-vs-rows: a beam caption ended after {ids.shape[1]} of '
                               f'{full} tokens although EOS was held back')
        return ids

    def greedy(inputs, **kw):
        # EOS banned until the last step (greedy's step is the same either way)
        return model.generate(inputs, strategy='greedy', min_len=full, **kw)

    # on a wide vocabulary greedy may pick words without scoring them all (word_pick.py),
    # which beam search, needing every word's log-probability, cannot: then greedy
    # scoring every word is timed as well, the floor of the same output-layer work
    from capdistill.models.captioners.decoding import word_pickers
    x, _ = dummy_batch(model, 1, frames, seed=0)
    pickers = bool(word_pickers(model.head, model.encode(x)[0], True))
    for b in args.batch_sizes:
        small, _ = dummy_batch(model, b, frames, seed=b)
        big, _ = dummy_batch(model, k * b, frames, seed=b)
        reps = max(1, args.repeats if b * k <= 160 else args.repeats // 2 + 1)
        # both run every step: with untrained weights caption lengths are arbitrary,
        # and the row is about the cost per step of the same number of rows
        fns = dict(beam=lambda: beam(small), greedy=lambda: greedy(big))
        if pickers:
            fns['every_word'] = lambda: greedy(big, shortlist=False)
        t, raw = side_by_side(fns, reps, raw=True)
        row = dict(beam_s=t['beam'], greedy_rows_s=t['greedy'],
                   ratio=paired_ratio(raw, 'beam', 'greedy'), repeats=reps)
        extra = ''
        if pickers:
            row.update(greedy_every_word_s=t['every_word'],
                       ratio_every_word=paired_ratio(raw, 'beam', 'every_word'))
            extra = (f'; greedy scoring every word {t["every_word"] * 1e3:.1f} ms, ratio '
                     f'{row["ratio_every_word"]:.2f}x')
        out[b] = row
        print(f'beam-vs-rows  B={b:>3}: beam{k} at batch {b} {t["beam"] * 1e3:8.1f} ms, '
              f'greedy at batch {k * b} {t["greedy"] * 1e3:8.1f} ms, '
              f'ratio {row["ratio"]:.2f}x{extra} (median of {reps} paired repeats; '
              'goal <= 1.2x)', flush=True)
    return out


@contextlib.contextmanager
def wrapped(targets, wrap):
    """Each ``(owner, attr, name)`` of ``targets`` (a class or an object, the method's
    name, a label) runs through ``wrap(name, fn)`` inside the block and is restored after
    it (an inherited method goes back to being inherited; a classmethod stays one)."""
    missing = object()
    saved = [(owner, attr, vars(owner).get(attr, missing)) for owner, attr, _ in targets]
    try:
        for owner, attr, name in targets:
            own = vars(owner).get(attr)
            if isinstance(own, classmethod):
                setattr(owner, attr, classmethod(wrap(name, own.__func__)))
            else:
                setattr(owner, attr, wrap(name, getattr(owner, attr)))
        yield
    finally:
        for owner, attr, fn in reversed(saved):
            if fn is missing:
                delattr(owner, attr)
            else:
                setattr(owner, attr, fn)


def step_breakdown(model, decode_all, repeats, videos):
    """Where cached greedy decoding at batch 1 goes, from one profile: the output layer
    (every op with the vocabulary as a dimension, the word lookup's one row too), the
    word pickers of ``word_pick`` (every op inside them), the blocks' other matrix
    products, attention kernels, all other tensor ops, and the time outside tensor ops
    (Python, the decoding loop; profiler overhead inflates it somewhat)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from capdistill.models.captioners import word_pick
    decode_all()
    vocab = model.head.vocab_size
    pickers = [(cls, 'argmax', 'word_pick')
               for cls in (word_pick.VocabularyGroups, word_pick.Int8Shortlist)]

    def labelled(name, fn):
        def argmax(self, h, banned=None, banned_words=None):
            with record_function(name):
                return fn(self, h, banned, banned_words)
        return argmax
    with wrapped(pickers, labelled), \
            profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = clock()
        for _ in range(repeats):
            decode_all()
        wall = (clock() - start) / repeats
    matmul = ('aten::addmm', 'aten::mm', 'aten::bmm', 'aten::matmul', 'aten::mv',
              'aten::_addmm_activation', 'aten::addmv')
    sums = dict(output_layer=0.0, pick=0.0, matmul=0.0, attention=0.0, other=0.0)
    top_level = 0  # tensor ops called from Python (each pays the dispatch cost once)
    for e in prof.events():
        if e.name == 'word_pick':
            continue
        top_level += e.cpu_parent is None or e.cpu_parent.name == 'word_pick'
        parent, in_pick = e.cpu_parent, False
        while parent is not None and not in_pick:
            in_pick, parent = parent.name == 'word_pick', parent.cpu_parent
        dims = [d for shape in (e.input_shapes or []) for d in (shape or [])]
        if in_pick:
            kind = 'pick'
        elif vocab in dims or e.name.startswith('quantized::'):
            kind = 'output_layer'
        elif e.name in matmul:
            kind = 'matmul'
        elif 'scaled_dot_product' in e.name or 'flash_attention' in e.name:
            kind = 'attention'
        else:
            kind = 'other'
        sums[kind] += e.self_cpu_time_total
    per = 1e6 * repeats
    parts = {f'{k}_s' if k != 'other' else 'other_ops_s': v / per for k, v in sums.items()}
    parts['decode_s'] = wall
    parts['ops_per_video'] = top_level / repeats / videos
    parts['outside_ops_s'] = max(0.0, wall - sum(sums.values()) / per)
    parts['vocab'] = vocab
    return parts


def phase_times(model, decode_all, repeats, videos):
    """Wall-clock split of the cached decodes, per video: the encoder, the decoder's
    set-up (``start``, or the one-video decoder's ``of``: weights check, visual prefix,
    buffers), the steps, the word picks and the rest (the decoding loop, ``generate``).
    Each part is timed where it runs, between the others (a timer costs ~0.2 us a call);
    the pass with the median total of ``repeats``."""
    from capdistill.models.captioners import one_video, word_pick
    spent = {}

    def timed(name, fn):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
        return run
    head_cls, decoder = type(model.head), one_video.OneVideoDecoder
    parts = [(model, 'encode', 'encoder'), (head_cls, 'start', 'setup'),
             (decoder, 'of', 'setup'), (head_cls, 'step', 'steps'), (decoder, 'step', 'steps'),
             (word_pick.VocabularyGroups, 'argmax', 'picks'),
             (word_pick.Int8Shortlist, 'argmax', 'picks')]
    passes = []
    with wrapped(parts, timed):
        for _ in range(repeats):
            spent.clear()
            start = time.perf_counter()
            decode_all()
            passes.append(dict(spent, total=time.perf_counter() - start))
    median = sorted(passes, key=lambda p: p['total'])[len(passes) // 2]
    out = {k: median.get(k, 0.0) / videos
           for k in ('total', 'encoder', 'setup', 'steps', 'picks')}
    out['rest'] = out['total'] - sum(out[k] for k in ('encoder', 'setup', 'steps', 'picks'))
    return out


def pick_stats(model, decode_all):
    """Which picker answered each step of one pass, and the output-layer bytes read per
    step (float logits: the whole layer; groups: their centres and the rows opened;
    int8 shortlist: its int8 copy and the candidates' float rows)."""
    from capdistill.models.captioners.word_pick import VocabularyGroups, word_pickers
    head = model.head
    pickers = word_pickers(head, head.output_weight.new_zeros(1), True)  # as at batch 1
    for p in pickers:
        p.served = p.rows_read = 0
    steps = sum(int(ids.shape[1]) for ids in decode_all())
    v, e = head.output_weight.shape
    row = dict(steps=steps, float_steps=steps, out_bytes=0)
    for p in pickers:
        name = 'groups' if isinstance(p, VocabularyGroups) else 'int8'
        row[f'{name}_steps'] = p.served
        row[f'{name}_rows'] = p.rows_read / max(p.served, 1)
        row['float_steps'] -= p.served
        fixed = p.centres.numel() * 4 if name == 'groups' else v * e
        row['out_bytes'] += p.served * fixed + p.rows_read * e * 4
    row['out_bytes'] = (row['out_bytes'] + row['float_steps'] * v * e * 4) / max(steps, 1)
    return row


def weight_floor(head, steps, out_bytes=None):
    """Bytes of weights a cached step reads, the bandwidth one thread gets, and the
    resulting floor for a decode of ``steps`` tokens.

    Every step reads each weight matrix of the blocks once (a matrix-vector product at
    batch 1), of the word embedding's input side one row and of the positions one; of
    the tied output layer ``out_bytes`` (default: all of it, as float logits do). The
    bandwidth is timed on the product a step scores the output layer with
    (``output_product``).
    """
    from capdistill.models.captioners.word_pick import output_product
    w = head.output_weight
    skip = {id(w), id(getattr(head, 'word_pos', None))}
    nbytes = sum(p.numel() * p.element_size() for p in head.parameters() if id(p) not in skip)
    nbytes += w.numel() * w.element_size() if out_bytes is None else out_bytes
    h = torch.randn(1, w.shape[1])
    # the very product a step runs (on AVX-512 CPUs a plain one-row product reads slower)
    t_read = side_by_side(dict(read=lambda: output_product(h, w)), 30)['read']
    bandwidth = w.numel() * w.element_size() / t_read
    return dict(bytes_per_token=nbytes, bandwidth_Bps=bandwidth,
                floor_s=steps * nbytes / bandwidth)


def split_features(model, args, limit):
    """Frame features ``(N, T, D)`` of the first ``limit`` videos of ``--data-split``."""
    from mmengine.registry import DefaultScope

    from capdistill.engine.setup import read_config
    from capdistill.registry import DATASETS
    cfg = read_config(args.config, args.cfg_options)
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
        if len(vids) >= limit:
            break
    return torch.stack([torch.as_tensor(v['inputs'][key]) for v in vids]).float()


def batch1(model, args, frames):
    """Cached greedy against the reference loop, one video at a time: the first
    ``--batch1-videos`` videos of ``--data-split`` with a trained checkpoint (captions
    end where the model ends them), else one random video (every step runs)."""
    key = model.feature_key
    if args.checkpoint:
        inputs = [{key: f[None], f'{key}_mask': torch.ones(1, f.shape[0], dtype=torch.bool)}
                  for f in split_features(model, args, args.batch1_videos or 8)]
    else:
        from capdistill.evaluation.cost import dummy_batch
        inputs = [dummy_batch(model, 1, frames, seed=1)[0]]
    n = len(inputs)

    def decode_all(**kw):
        return [model.generate(x, strategy='greedy', **kw) for x in inputs]
    t, raw = side_by_side(dict(cached=decode_all,
                               reference=lambda: decode_all(use_cache=False)),
                          args.repeats, raw=True)
    same = all(torch.equal(a, b) for a, b in zip(decode_all(), decode_all(use_cache=False)))
    parts = step_breakdown(model, decode_all, args.repeats, n)
    phases = phase_times(model, decode_all, args.repeats, n)
    picks = pick_stats(model, decode_all)
    steps = picks['steps'] / n
    parts.update(weight_floor(model.head, steps, picks['out_bytes']))
    # the least a tensor op costs here: an add of two one-element tensors
    one = torch.ones(1)
    parts['op_s'] = side_by_side(dict(add=lambda: [one + one for _ in range(1000)]),
                                 5)['add'] / 1000
    row = dict(videos=n, cached_s=t['cached'] / n, reference_s=t['reference'] / n,
               speedup=paired_ratio(raw, 'reference', 'cached'), identical=same,
               picks=picks, phases=phases, **parts)
    row['floor_speedup'] = row['reference_s'] / row['floor_s']
    where = (f'{n} {args.data_split} videos, one at a time' if args.checkpoint
             else 'a random video')
    print(f'batch1 ({where}, {steps:.1f} steps per caption): cached greedy '
          f'{row["cached_s"] * 1e3:.1f} ms, reference loop {row["reference_s"] * 1e3:.1f} ms '
          f'per video, speedup {row["speedup"]:.1f}x (goal >= 10x), tokens identical={same}',
          flush=True)
    keys = ('output_layer_s', 'pick_s', 'matmul_s', 'attention_s', 'other_ops_s')
    ops_s = sum(parts[k] for k in keys)
    share = {k: 100 * parts[k] / ops_s for k in keys}
    print(f'batch1 breakdown of the cached decodes (vocabulary {parts["vocab"]}; shares of '
          f'the profiled tensor-op time): output layer {share["output_layer_s"]:.0f}%, word '
          f'pickers {share["pick_s"]:.0f}%, other matrix products {share["matmul_s"]:.0f}%, '
          f'attention {share["attention_s"]:.0f}%, other tensor ops '
          f'{share["other_ops_s"]:.0f}%; outside tensor ops (Python, profiler) '
          f'{parts["outside_ops_s"] * 1e3:.1f} ms of {parts["decode_s"] * 1e3:.1f} ms', flush=True)
    us = {k: v * 1e6 for k, v in phases.items()}
    print(f'batch1 phases of a cached decode (wall clock, per video): {us["total"]:.0f} us = '
          f'encoder {us["encoder"]:.0f} + decoder set-up {us["setup"]:.0f} + {steps:.1f} steps '
          f'{us["steps"]:.0f} ({us["steps"] / steps:.0f} each) + word picks {us["picks"]:.0f} '
          f'({us["picks"] / steps:.0f} each) + the rest (decoding loop, generate) '
          f'{us["rest"]:.0f}', flush=True)
    said = [f'{picks[k + "_steps"]} by vocabulary groups ({picks[k + "_rows"]:.0f} rows read '
            f'each)' if k == 'groups' else f'{picks[k + "_steps"]} by the int8 shortlist'
            for k in ('groups', 'int8') if k + '_steps' in picks]
    print(f'batch1 word picks: {picks["steps"]} steps: ' + ', '.join(
        said + [f'{picks["float_steps"]} from float logits over all words']), flush=True)
    print(f'batch1 floor: a cached step reads {row["bytes_per_token"] / 1e6:.2f} MB of weights '
          f'({picks["out_bytes"] / 1e6:.2f} MB of them output layer); one thread reads '
          f'{row["bandwidth_Bps"] / 1e9:.1f} GB/s (reading the output layer as a step does), so a '
          f'caption takes >= {row["floor_s"] * 1e3:.2f} ms and the reference loop '
          f'({row["reference_s"] * 1e3:.1f} ms) can be beaten by at most '
          f'{row["floor_speedup"]:.1f}x', flush=True)
    ops_floor = parts['ops_per_video'] * parts['op_s']
    row['dispatch_floor_s'] = ops_floor
    print(f'batch1 dispatch: a cached decode calls {parts["ops_per_video"]:.0f} tensor ops per '
          f'video ({parts["ops_per_video"] / steps:.0f} per step); at {parts["op_s"] * 1e6:.1f} us '
          f'for the cheapest op (a one-element add) that alone is {ops_floor * 1e3:.2f} ms, '
          f'so the reference loop can be beaten by at most '
          f'{row["reference_s"] / max(ops_floor, row["floor_s"]):.1f}x', flush=True)
    return row


def lengths(model, args):
    """Cost per video on real inputs vs the same decode forced to full length."""
    key = model.feature_key
    feats = split_features(model, args, args.max_videos)
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


def rows_to_bound_normaliser(groups, h, tol):
    """Share of the output rows that must be read, per row of ``h`` ``(N, E)`` (normalised
    hidden states), before the groups left unread can add at most ``tol`` times the
    normaliser ``sum(exp(h @ W.T))``: groups are read best bound first, and an unread group
    of ``n`` words with bound ``b`` may add up to ``n * exp(b)``."""
    logits = h @ groups.weight.t()
    lse = torch.logsumexp(logits, 1, keepdim=True)
    bound = torch.addmm(h.norm(dim=1, keepdim=True) * groups.slack, h, groups.centres.t())
    sizes = torch.tensor([e - s for s, e in groups.spans], dtype=h.dtype)
    order = bound.argsort(1, descending=True)
    # the unread groups' largest possible addition, log-scaled, when the first i are read
    tail = torch.logcumsumexp((bound.gather(1, order) + sizes.log()[order]).flip(1), 1).flip(1)
    tail = torch.cat([tail, tail.new_full((len(h), 1), float('-inf'))], 1)
    need = (tail - lse > torch.log(torch.tensor(tol))).sum(1)        # groups to read
    read = torch.cat([sizes.new_zeros(len(h), 1), sizes[order].cumsum(1)], 1)
    return read.gather(1, need[:, None])[:, 0] / groups.weight.shape[0]


def words_holding_normaliser(h, weight, tol):
    """Share of the words, per row of ``h`` ``(N, E)``, that hold all but ``tol`` of its
    normaliser, largest scores first: what even a method told which words matter, without
    reading them, would still have to read to know the normaliser within ``tol``."""
    p = torch.softmax((h @ weight.t()).double(), 1).sort(1).values    # ascending
    rest = p.cumsum(1)  # rest[:, i]: the mass of the i + 1 least likely words
    leave = (rest <= tol).sum(1)                                       # words left unread
    return (weight.shape[0] - leave).double() / weight.shape[0]


def normaliser(model, args, frames):
    """The output rows beam search would read to bound its normaliser with the groups
    (see the module doc), beside those greedy's pick reads."""
    from capdistill.models.captioners.word_pick import VocabularyGroups
    key = model.feature_key
    if args.checkpoint:
        feats = split_features(model, args, args.max_videos)
        inputs = {key: feats, f'{key}_mask': torch.ones(feats.shape[:2], dtype=torch.bool)}
    else:
        from capdistill.evaluation.cost import dummy_batch
        inputs = dummy_batch(model, min(args.max_videos, 32), frames, seed=2)[0]
    head, eos = model.head, model.tokenizer.eos_id
    ids = model.generate(inputs, strategy='greedy')
    tokens = torch.cat([ids.new_full((len(ids), 1), model.tokenizer.bos_id), ids], 1)
    hidden = head.norm(model.caption_logits(inputs, tokens, return_hidden=True)[1])
    # the states that picked each word: up to and including the one that picked EOS
    picked = torch.cat([torch.ones_like(ids[:, :1], dtype=torch.bool),
                        ids[:, :-1] != eos], 1)
    h = hidden[picked]
    groups = VocabularyGroups.of(head.output_weight)
    groups.served = groups.rows_read = 0
    for row in h:
        groups.argmax(row[None])
    v = head.output_weight.shape[0]
    out = dict(states=len(h), vocab=v, groups=len(groups.spans),
               greedy_rows=groups.rows_read / max(groups.served, 1),
               greedy_served=groups.served, share={}, least={})
    pick = (f'greedy\'s pick reads {out["greedy_rows"]:.0f} rows on average ({groups.served} '
            f'of {len(h)} picks answered by the groups)' if groups.served else
            'the groups answered none of greedy\'s picks (every word would be scored)')
    print(f'normaliser ({v} words in {len(groups.spans)} groups; {len(h)} hidden states of '
          f'greedy\'s captions): {pick}', flush=True)
    for tol in args.normaliser_tol:
        share = rows_to_bound_normaliser(groups, h, tol)
        least = words_holding_normaliser(h, head.output_weight, tol)
        for name, x in (('share', share), ('least', least)):
            out[name][str(tol)] = dict(median=float(x.median()), max=float(x.max()),
                                       min=float(x.min()))
        print(f'normaliser: to bound the unread rows within {tol:g} of the normaliser a beam '
              f'step reads {float(share.median()):.1%} of the rows (median; '
              f'{float(share.min()):.1%}-{float(share.max()):.1%}); the words holding all but '
              f'{tol:g} of it are {float(least.median()):.1%} '
              f'({float(least.min()):.1%}-{float(least.max()):.1%})', flush=True)
    return out


def products(model, args):
    """A step's output-layer product both ways round for a few rows (see the module doc)."""
    from capdistill.models.captioners.word_pick import takes_tall_product, tall_product
    layers = [model.head.output_weight.detach()] + [
        torch.randn(*(int(v) for v in shape.split('x'))) for shape in args.product_shapes]
    out = {}
    for w in layers:
        words, width = w.shape
        mib = w.numel() * w.element_size() / 2 ** 20
        calls = max(3, int(30 * 2 ** 20 // (w.numel() * w.element_size())))  # ~30 MiB a time
        for n in args.product_rows:
            h = torch.randn(n, width)
            ms, raw = side_by_side(
                dict(plain=lambda: [F.linear(h, w) for _ in range(calls)],
                     tall=lambda: [tall_product(h, w) for _ in range(calls)]),
                args.repeats, raw=True)
            takes = 'the other way round' if takes_tall_product(h, w) else 'plain'
            row = dict(words=words, width=width, rows=n, mib=mib, takes=takes,
                       plain_s=ms['plain'] / calls, tall_s=ms['tall'] / calls,
                       ratio=paired_ratio(raw, 'plain', 'tall'))
            out[f'{words}x{width}/{n}'] = row
            print(f'products {words}x{width} ({mib:.0f} MiB), {n} row{"s" * (n > 1)}: plain '
                  f'{row["plain_s"] * 1e3:.2f} ms, the other way round {row["tall_s"] * 1e3:.2f} '
                  f'ms (plain / other {row["ratio"]:.2f}x); output_product takes {takes}',
                  flush=True)
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
        if 'normaliser' in args.rows:
            results['normaliser'] = normaliser(model, args, frames)
        if 'products' in args.rows:
            results['products'] = products(model, args)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == '__main__':
    from capdistill.utils.cli import friendly_main
    friendly_main(main)()
