"""GPU check: the ``gpu``-marked tests, then one epoch of SFTCap (b) on synthetic CLIP features.

    python tools/analysis/gpu_check.py                   # on a CUDA machine
    python tools/analysis/gpu_check.py --amp             # the same run under fp16 AMP
    python tools/analysis/gpu_check.py --device cpu      # dry run: small data, on the CPU

1. ``pytest -m gpu`` (DDP over NCCL, fp16 AMP training, decoding on the device); on a
   CPU they are reported as skipped.
2. A synthetic MSR-VTT-layout data set (``make_synthetic_msrvtt.py``): 15 frames of 768-d
   "ViT-L/14" teacher features and 512-d "ViT-B/32" student features per video, 20
   captions each, random features (throughput does not depend on them).
3. One training epoch of ``configs/sftcap/sftcap_l14-to-b32_clip_1xb64-20e_msrvtt.py``
   (SFTCap (b): frozen teacher -> light student, object/action/word/grade terms) through
   mmengine's Runner, no validation. The teacher keeps random weights
   (``allow_random_teacher``): the point is speed and memory, not scores.

Prints throughput after a warm-up (captions/s, s/iter) and peak memory (CUDA: allocated
and reserved by torch; CPU: the process's peak resident set). Exit status 1 when a test
fails or the run does not finish.
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = 'configs/sftcap/sftcap_l14-to-b32_clip_1xb64-20e_msrvtt.py'


def parse_args(argv=None):
    from capdistill.utils.cli import int_at_least
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', choices=['cuda', 'cpu'], default='cuda')
    p.add_argument('--num-videos', type=int_at_least(1), default=None,
                   help='synthetic videos (65%% train); default 1000 on cuda, 24 on cpu')
    p.add_argument('--captions-per-video', type=int_at_least(1), default=None,
                   help='default 20 on cuda, 4 on cpu')
    p.add_argument('--batch-size', type=int_at_least(1), default=None,
                   help='default 64 on cuda, 16 on cpu')
    p.add_argument('--num-workers', type=int_at_least(0), default=None,
                   help='default 4 on cuda, 0 on cpu')
    p.add_argument('--warmup', type=int_at_least(0), default=None,
                   help='iterations left out of the throughput (default 10 on cuda, 1 on cpu)')
    p.add_argument('--amp', action='store_true', help='fp16 AMP (bf16 autocast on cpu)')
    p.add_argument('--config', default=CONFIG)
    p.add_argument('--skip-tests', action='store_true')
    p.add_argument('--work-dir', help='data and run folder (default: a temporary one)')
    args = p.parse_args(argv)
    small = args.device == 'cpu'
    for name, cuda, cpu in (('num_videos', 1000, 24), ('captions_per_video', 20, 4),
                            ('batch_size', 64, 16), ('num_workers', 4, 0), ('warmup', 10, 1)):
        if getattr(args, name) is None:
            setattr(args, name, cpu if small else cuda)
    return args


def run_gpu_tests(device):
    """``pytest -m gpu`` in a subprocess; returns (ok, its last line)."""
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE='1')
    if device == 'cpu':
        env['CUDA_VISIBLE_DEVICES'] = ''
    cmd = [sys.executable, '-m', 'pytest', '-q', '-rs', '-m', 'gpu', '-p', 'no:cacheprovider',
           'tests/test_gpu.py']
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    lines = [ln for ln in (res.stdout + res.stderr).strip().splitlines() if ln.strip()]
    for line in lines:
        if line.startswith(('FAILED', 'ERROR', 'SKIPPED')):
            print(f'  {line}')
    return res.returncode in (0, 5), (lines[-1] if lines else '(no output)')


def sftcap_run(args, work):
    """One epoch of SFTCap (b) on synthetic data; returns a dict of measurements."""
    import torch
    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from capdistill.engine.setup import enable_amp
    from tools.analysis.make_synthetic_msrvtt import make

    data_root = os.path.join(work, 'data')
    start = time.perf_counter()
    info = make(data_root, args.num_videos, args.captions_per_video, dtype='float16')
    print(f'  data: {info["videos"]} videos, {info["captions"]} captions, splits '
          f'{info["splits"]} ({time.perf_counter() - start:.1f} s)')

    cfg = Config.fromfile(os.path.join(REPO, args.config))
    loader = dict(batch_size=args.batch_size, num_workers=args.num_workers,
                  persistent_workers=args.num_workers > 0, dataset=dict(data_root=data_root))
    cfg.merge_from_dict(dict(
        train_dataloader=loader,
        model=dict(teacher_ckpt=None, allow_random_teacher=True),
        train_cfg=dict(max_epochs=1, val_interval=1000),
        default_hooks=dict(logger=dict(interval=20),
                           checkpoint=dict(interval=1000, save_best=None, save_last=False)),
        work_dir=os.path.join(work, 'run')))
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.log_level = 'WARNING'  # this script prints its own summary
    if args.amp:
        enable_amp(cfg)

    class Throughput(Hook):
        """Wall time and captions of each iteration after the warm-up."""

        def __init__(self):
            self.times, self.captions, self.last = [], 0, None

        def before_train_epoch(self, runner):
            self.last = time.perf_counter()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if device == 'cuda':
                torch.cuda.synchronize()
            now = time.perf_counter()
            if batch_idx >= args.warmup:
                self.times.append(now - self.last)
                self.captions += len(data_batch['data_samples']['video_id'])
            self.last = now

    device = args.device
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    build = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    hook = Throughput()
    runner.register_hook(hook, 'LOWEST')
    begin = time.perf_counter()
    runner.train()
    end = time.perf_counter()
    out = dict(iters=len(runner.train_dataloader), build_s=begin - build, epoch_s=end - begin,
               batch=args.batch_size, measured_iters=len(hook.times))
    if hook.times:
        out['s_per_iter'] = sum(hook.times) / len(hook.times)
        out['captions_per_s'] = hook.captions / sum(hook.times)
    if device == 'cuda':
        out['peak_allocated_gib'] = torch.cuda.max_memory_allocated() / 2 ** 30
        out['peak_reserved_gib'] = torch.cuda.max_memory_reserved() / 2 ** 30
    out['peak_rss_gib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.device == 'cpu':
        os.environ['CUDA_VISIBLE_DEVICES'] = ''  # before torch looks for devices
    sys.path.insert(0, REPO)
    import capdistill
    capdistill.setup_runtime()
    import torch
    if args.device == 'cuda' and not torch.cuda.is_available():
        print('error: no CUDA device here; use --device cpu for the dry run', file=sys.stderr)
        return 1
    name = torch.cuda.get_device_name(0) if args.device == 'cuda' else 'CPU'
    print(f'gpu_check on {name}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} CPU threads, amp: {"on" if args.amp else "off"}')
    ok = True
    if not args.skip_tests:
        print('[1/2] pytest -m gpu')
        ok, summary = run_gpu_tests(args.device)
        print(f'  {summary}')
    print(f'[2/2] SFTCap (b), 1 epoch: {args.config}')
    work = args.work_dir or tempfile.mkdtemp(prefix='gpu_check_')
    try:
        m = sftcap_run(args, work)
    except Exception as exc:  # report and fail; the traceback is in the run's log
        print(f'error: the SFTCap run failed: {type(exc).__name__}: {exc}', file=sys.stderr)
        return 1
    print(f'  {m["iters"]} iterations of batch {m["batch"]}: build {m["build_s"]:.1f} s, '
          f'epoch {m["epoch_s"]:.1f} s')
    if 's_per_iter' in m:
        print(f'  throughput (last {m["measured_iters"]} iterations): '
              f'{m["s_per_iter"]:.3f} s/iter, {m["captions_per_s"]:.1f} captions/s')
    else:
        print('  throughput: no iteration after the warm-up (use more videos or --warmup 0)')
    if 'peak_allocated_gib' in m:
        print(f'  peak GPU memory: {m["peak_allocated_gib"]:.2f} GiB allocated, '
              f'{m["peak_reserved_gib"]:.2f} GiB reserved')
    print(f'  peak process memory (RSS): {m["peak_rss_gib"]:.2f} GiB')
    print(f'  data and logs: {work}')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
