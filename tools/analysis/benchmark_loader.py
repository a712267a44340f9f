"""Training loader speed against the model's training step speed.

    python tools/analysis/benchmark_loader.py CONFIG [--steps 10]

Builds the config's ``train_dataloader`` and model (as ``tools/train.py`` would) and
reports, side by side: samples/s and seconds per batch of the loader alone, seconds
per forward+backward+optimizer step on real batches, and loader time / step time (the
goal is under 5%: data loading should never be what training waits for).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def parse_args():
    from capdistill.utils.cli import add_cfg_options, int_at_least
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('--steps', type=int_at_least(1), default=10, help='training steps timed')
    p.add_argument('--warmup', type=int_at_least(0), default=2, help='untimed batches/steps first')
    add_cfg_options(p)
    return p.parse_args()


def main():
    args = parse_args()
    import torch
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    import capdistill
    capdistill.setup_runtime()  # compatibility patches, for this process only
    from capdistill.registry import MODELS

    from capdistill.engine.setup import apply_cpu_defaults, read_config
    # threads and 'auto' loader workers as tools/train.py resolves them
    cfg = apply_cpu_defaults(read_config(args.config, args.cfg_options))
    init_default_scope(cfg.get('default_scope', 'capdistill'))

    from capdistill.registry import FUNCTIONS
    loader_cfg = cfg.train_dataloader.copy()
    collate = loader_cfg.get('collate_fn')
    if isinstance(collate, dict) and isinstance(collate.get('type'), str):
        # resolve in capdistill's own registry (the root one may not see it yet)
        fn = FUNCTIONS.get(collate['type'])
        if fn is not None:
            loader_cfg['collate_fn'] = dict(collate, type=fn)
    t0 = time.perf_counter()
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    build_s = time.perf_counter() - t0
    batch_size = cfg.train_dataloader.batch_size

    def epoch():
        t0 = time.perf_counter()
        out = list(loader)
        return out, (time.perf_counter() - t0) / max(len(out), 1)

    # first epoch: files read from disk (and per-worker caches filled); later epochs are
    # what a long run sees
    timed, cold_s = epoch()
    timed, load_s = epoch()
    model = MODELS.build(cfg.model)
    model.train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    for b in timed[:args.warmup]:
        model.train_step(b, optim)
    t0 = time.perf_counter()
    for i in range(args.steps):
        model.train_step(timed[i % len(timed)], optim)
    step_s = (time.perf_counter() - t0) / args.steps

    print(f'config:      {args.config}')
    print(f'dataset:     {len(loader.dataset)} samples, batch {batch_size}, '
          f'built in {build_s:.2f} s (cached preprocessing)')
    print(f'threads:     torch {torch.get_num_threads()}, loader workers '
          f'{cfg.train_dataloader.get("num_workers", 0)}')
    print(f'{"":24s}{"s/batch":>10s}{"samples/s":>12s}')
    print(f'{"loader, first epoch":24s}{cold_s:10.4f}{batch_size / cold_s:12.1f}')
    print(f'{"loader, later epochs":24s}{load_s:10.4f}{batch_size / load_s:12.1f}')
    print(f'{"train step (fwd+bwd+opt)":24s}{step_s:10.4f}{batch_size / step_s:12.1f}')
    ratio = load_s / step_s
    print(f'loader / step time: {100 * ratio:.1f}% later epochs, '
          f'{100 * cold_s / step_s:.1f}% first epoch (goal < 5%)')
    return 0 if ratio < 0.05 else 1


if __name__ == '__main__':
    from capdistill.utils.cli import friendly_main
    sys.exit(friendly_main(main)())
