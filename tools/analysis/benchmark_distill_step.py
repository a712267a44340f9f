"""Cost of a distillation training step against a plain student step, in one process.

Builds the plain student of STUDENT_CONFIG and the distillation algorithm of KD_CONFIG
(same student architecture), takes ``--batches`` real training batches from KD_CONFIG's
data, and times full training steps (``train_step``: forward, losses, backward, Adam)
interleaved, batch by batch, reporting medians:

* ``plain``: the student alone;
* ``kd``: the distillation step with the teacher forward run every step;
* ``kd+cache``: the same with the teacher cache on (``--topk`` logits per position,
  filled by one pass over the batches first, which is timed as ``cache fill``).

Prints the ratios to the plain step (goal: ``kd+cache`` <= 1.3x) and what the cache
takes on disk per 1,000 captions, measured and for a CLIP-size vocabulary. Timing needs
no trained teacher (``allow_random_teacher``); the cache goes to a temporary folder.

Example::

    OMP_NUM_THREADS=1 python tools/analysis/benchmark_distill_step.py \\
        configs/capdemo/baseline_student_grid8_1xb64-8e_capdemo.py \\
        configs/capdemo/wordkd_teacher-to-student_grid16-grid8_1xb64-8e_capdemo.py
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def parse_args(argv=None):
    from capdistill.utils.cli import int_at_least
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('student_config')
    p.add_argument('kd_config')
    p.add_argument('--topk', type=int_at_least(1), default=32,
                   help='teacher logits kept per position')
    p.add_argument('--batches', type=int_at_least(1), default=4)
    p.add_argument('--repeats', type=int_at_least(1), default=3, help='interleaved passes (median)')
    p.add_argument('--cache-dir', help='teacher cache folder (default: a temporary one)')
    p.add_argument('--threads', type=int_at_least(1), default=1)
    p.add_argument('--out', help='also write the results as json here')
    return p.parse_args(argv)


def _build(cfg_model):
    from mmengine.registry import DefaultScope

    from capdistill.registry import MODELS
    with DefaultScope.overwrite_default_scope('capdistill'):
        return MODELS.build(cfg_model)


def _optim(model):
    from mmengine.optim import OptimWrapper
    params = [p for p in model.parameters() if p.requires_grad]
    return OptimWrapper(torch.optim.Adam(params, lr=1e-4))


def _batches(cfg, n):
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from capdistill.datasets.caption_dataset import restrict_features
    restrict_features(cfg)
    loader_cfg = dict(cfg.train_dataloader)
    loader_cfg['num_workers'] = 0
    with DefaultScope.overwrite_default_scope('capdistill'):
        loader = Runner.build_dataloader(loader_cfg, seed=0)
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == n:
            break
    return out


def folder_bytes(path):
    """Bytes and number of the cache's per-caption files under ``path``."""
    total = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            if not name.endswith('.safetensors'):
                continue  # the folder's teacher.json is not a caption's
            total += os.path.getsize(os.path.join(root, name))
            files += 1
    return total, files


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from capdistill.engine.setup import read_config
    s_cfg, k_cfg = read_config(args.student_config), read_config(args.kd_config)
    if k_cfg.model.get('type') != 'DistillAlgorithm':
        raise ValueError(f'{args.kd_config}: model.type is {k_cfg.model.get("type")!r}, '
                         'not DistillAlgorithm; give a distillation config second.')
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix='teacher_cache_')
    kd_model = dict(k_cfg.model, teacher_ckpt=None, allow_random_teacher=True)
    models = dict(plain=_build(s_cfg.model), kd=_build(kd_model),
                  **{'kd+cache': _build(dict(kd_model, teacher_cache=dict(
                      cache_dir=cache_dir, topk=args.topk, mode='auto')))})
    # one student's initial weights for all three, so they do the same work
    state = models['plain'].state_dict()
    for name in ('kd', 'kd+cache'):
        models[name].student.load_state_dict(state)
    optims = {k: _optim(m) for k, m in models.items()}
    for m in models.values():
        m.train()
    batches = _batches(k_cfg, args.batches)
    captions = sum(len(b['data_samples']['video_id']) for b in batches)

    def step(name, batch):
        start = time.perf_counter()
        models[name].train_step(batch, optims[name])
        return time.perf_counter() - start

    fill = sum(step('kd+cache', b) for b in batches)  # writes the cache
    size, files = folder_bytes(cache_dir)
    for b in batches:  # warm-up; the cache's first read is also checked by the teacher
        step('plain', b), step('kd', b), step('kd+cache', b)
    times = {k: [] for k in models}
    for _ in range(args.repeats):
        for b in batches:
            for name in models:
                times[name].append(step(name, b))
    med = {k: statistics.median(v) for k, v in times.items()}
    cache = models['kd+cache'].teacher_cache
    per_k = size / max(files, 1) * 1000
    steps = max(1, len(batches[0]['data_samples']['tokens'][0]) - 1)
    clip_est = (steps * args.topk * 8 + 256) * 1000  # float32 value + int32 id, + header
    res = dict(steps_s=med, ratio_kd=med['kd'] / med['plain'],
               ratio_kd_cache=med['kd+cache'] / med['plain'], cache_fill_s=fill,
               captions=captions, cache_files=files, cache_bytes=size,
               cache_bytes_per_1000_captions=per_k, hits=cache.hits, misses=cache.misses,
               checked_batches=cache.verified_batches,
               topk=args.topk)
    print(f'distill step, batch {len(batches[0]["data_samples"]["video_id"])}, '
          f'{len(batches)} batches x {args.repeats} interleaved passes (medians):')
    print(f'  plain student step {med["plain"] * 1e3:.1f} ms; word-KD step '
          f'{med["kd"] * 1e3:.1f} ms ({res["ratio_kd"]:.2f}x); word-KD with teacher cache '
          f'(top-{args.topk}) {med["kd+cache"] * 1e3:.1f} ms ({res["ratio_kd_cache"]:.2f}x, '
          'goal <= 1.3x)')
    print(f'  cache fill (first pass, teacher run + write) {fill:.2f} s for {captions} '
          f'captions; on disk {size / 1e6:.2f} MB in {files} files = '
          f'{per_k / 1e6:.2f} MB per 1,000 captions (top-{args.topk}; files keep each '
          f'caption\'s own length; at most ~{clip_est / 1e6:.2f} MB for {steps}-position '
          'captions, whatever the vocabulary size)')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(res, f, indent=1)
    if not args.cache_dir:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return res


if __name__ == '__main__':
    from capdistill.utils.cli import friendly_main
    friendly_main(main)()
