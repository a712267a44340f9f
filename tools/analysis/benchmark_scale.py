"""How costs grow with the number of videos: a table (and a plot) over data set sizes.

    python tools/analysis/make_synthetic_msrvtt.py --root /tmp/synth_1000 --num-videos 1000
    ...  (3000, 10000)
    OMP_NUM_THREADS=1 python tools/analysis/benchmark_scale.py \\
        /tmp/synth_1000 /tmp/synth_3000 /tmp/synth_10000 --plot docs/scale.png

For each data root (MSR-VTT layout, e.g. from ``make_synthetic_msrvtt.py``) and the
CONFIG's data and model (default: the SFTCap (b) MSR-VTT config), each phase runs in a
fresh subprocess, so its time and peak memory (max RSS) are its own:

* ``build cold`` / ``build warm``: the training dataset (tokenising every caption,
  concepts and grades) without and then with its preprocessing cache;
* ``loader``: training samples per second through the dataloader (``--loader-batches``),
  the feature files read once beforehand (in the page cache, as from the second epoch on);
* ``train step``: seconds per training step of the config's model (student with its
  teacher; random weights), median of ``--train-steps``, and the epoch it implies
  (steps per epoch x step time: a full epoch at 10,000 videos takes hours on 2 cores);
* ``eval``: greedy decoding of the whole test split by the deployed student plus the
  caption metric (``--scorers``);
* ``epoch`` (not run by default: hours at 3,000 videos and more): one real training
  epoch through the Runner (the config's hooks, logging and end-of-epoch checkpoint; no
  validation), its seconds, iterations and peak memory, beside the implied one.

Times per video (or per caption) should stay flat as the size grows: nothing may grow
faster than linearly.

``--out`` keeps a run's results; ``--results FILE`` prints the table and draws the plot
from such a file without measuring again, and ``--timed-epoch VIDEOS=SECONDS`` adds an
epoch timed elsewhere (e.g. through ``tools/train.py`` in segments continued by
``--resume``) to the row of that size:

    python tools/analysis/benchmark_scale.py --results docs/scale.json \
        --timed-epoch 1000=2099 3000=5747 --plot docs/scale.png
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
DEFAULT_CONFIG = 'configs/sftcap/sftcap_l14-to-b32_clip_1xb64-20e_msrvtt.py'
PHASES = ('build_cold', 'build_warm', 'loader', 'train', 'eval')
ALL_PHASES = PHASES + ('epoch',)


def parse_args(argv=None):
    p = _parser()
    args = p.parse_args(argv)
    if bool(args.roots) == bool(args.results):
        p.error('give data roots to measure, or --results FILE (not both)')
    return args


def _parser():
    from capdistill.utils.cli import int_at_least
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('roots', nargs='*', help='data roots, smallest first')
    p.add_argument('--config', default=DEFAULT_CONFIG)
    p.add_argument('--phases', nargs='+', default=list(PHASES), choices=ALL_PHASES,
                   help=f'default: {" ".join(PHASES)}; add epoch for a real training epoch')
    p.add_argument('--loader-batches', type=int_at_least(1), default=20)
    p.add_argument('--train-steps', type=int_at_least(1), default=3)
    p.add_argument('--scorers', nargs='+', default=['Bleu', 'METEOR', 'ROUGE_L', 'CIDEr'])
    p.add_argument('--out', help='write the results as json here')
    p.add_argument('--plot', help='write a plot (png) here')
    p.add_argument('--results', help='table and plot from this --out file; measure nothing')
    p.add_argument('--timed-epoch', nargs='+', default=[], metavar='VIDEOS=SECONDS',
                   type=_timed_epoch, help='an epoch timed elsewhere, for the row of that size')
    p.add_argument('--phase', help=argparse.SUPPRESS)  # internal: run one phase
    return p


def _timed_epoch(text):
    videos, sep, seconds = text.partition('=')
    try:
        videos, seconds = int(videos), float(seconds)
    except ValueError:
        videos = None
    if not sep or videos is None or videos <= 0 or not seconds > 0:
        raise argparse.ArgumentTypeError(
            f'{text!r}: expected VIDEOS=SECONDS, e.g. 10000=18100')
    return videos, seconds


def _cfg(args, root):
    from mmengine.config import Config

    from capdistill.datasets.caption_dataset import restrict_features
    cfg = Config.fromfile(os.path.join(REPO, args.config))
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[name]
        loader.dataset.data_root = root
        loader.dataset.allow_pickle = False
        loader.num_workers = 0
        loader.persistent_workers = False
    m = cfg.model
    m.teacher_ckpt = None
    m.allow_random_teacher = True
    for part in (m, m.get('student') or {}, m.get('teacher') or {}):
        head = part.get('head') if hasattr(part, 'get') else None
        if head and head.get('clip_embedding'):
            head.clip_embedding = None  # timing needs no CLIP weights
    return restrict_features(cfg)


def _dataset(cfg, name='train_dataloader'):
    from mmengine.registry import DefaultScope

    from capdistill.registry import DATASETS
    with DefaultScope.overwrite_default_scope('capdistill'):
        return DATASETS.build(cfg[name].dataset)


def _loader(cfg, name):
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    with DefaultScope.overwrite_default_scope('capdistill'):
        return Runner.build_dataloader(cfg[name], seed=0)


def _read_features_once(ds):
    """Read the feature files ``ds`` loads once, untimed, so that the loader row measures
    the loader and not how much of the set the kernel still holds in its page cache (a
    set the machine has not read lately comes from the disk on its first epoch)."""
    sources = {ds._feature_source(key, vid)
               for vid in ds.get_video_ids() for key in ds.feature_dirs}
    for path in {s if isinstance(s, str) else s[0] for s in sources}:  # (file.h5, vid)
        with open(path, 'rb') as f:
            while f.read(1 << 20):
                pass


def run_phase(args, root):
    """One phase in this process; returns its measurements."""
    import torch
    torch.set_num_threads(1)
    import capdistill
    capdistill.setup_runtime()
    cfg = _cfg(args, root)
    phase = args.phase
    out = {}
    start = time.perf_counter()
    if phase == 'build_cold':
        ann = cfg.train_dataloader.dataset.ann_file
        cache = os.path.join(root, os.path.dirname(ann), '.capdistill_cache')
        shutil.rmtree(cache, ignore_errors=True)
    if phase in ('build_cold', 'build_warm'):
        ds = _dataset(cfg)
        out.update(samples=len(ds))
    elif phase == 'loader':
        loader = _loader(cfg, 'train_dataloader')
        _read_features_once(loader.dataset)
        it = iter(loader)
        next(it)
        start = time.perf_counter()
        n = 0
        for _ in range(args.loader_batches):
            n += len(next(it)['data_samples']['video_id'])
        out.update(samples_per_s=n / (time.perf_counter() - start), samples=n)
    elif phase == 'train':
        from mmengine.optim import OptimWrapper
        from mmengine.registry import DefaultScope

        from capdistill.registry import MODELS
        loader = _loader(cfg, 'train_dataloader')
        with DefaultScope.overwrite_default_scope('capdistill'):
            model = MODELS.build(cfg.model)
        model.train()
        optim = OptimWrapper(torch.optim.Adam(
            [p for p in model.parameters() if p.requires_grad], lr=1e-4))
        times = []
        it = iter(loader)
        for i in range(args.train_steps + 1):
            batch = next(it)
            t0 = time.perf_counter()
            model.train_step(batch, optim)
            if i:  # the first step warms up
                times.append(time.perf_counter() - t0)
        step = statistics.median(times)
        out.update(step_s=step, steps_per_epoch=len(loader), epoch_s=step * len(loader))
    elif phase == 'eval':
        from mmengine.registry import DefaultScope

        from capdistill.registry import METRICS, MODELS
        loader = _loader(cfg, 'test_dataloader')
        with DefaultScope.overwrite_default_scope('capdistill'):
            model = MODELS.build(cfg.model)
            metric = METRICS.build(dict(cfg.test_evaluator, scorers=args.scorers))
        model.eval()
        t0 = time.perf_counter()
        videos = 0
        with torch.no_grad():
            for batch in loader:
                data = model.data_preprocessor(batch, False)
                preds = model(**data, mode='predict')
                metric.process(batch, preds)
                videos += len(preds)
        decode_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = metric.compute_metrics(metric.results)
        out.update(videos=videos, decode_s=decode_s, metric_s=time.perf_counter() - t0,
                   CIDEr=scores.get('CIDEr'))
    elif phase == 'epoch':
        import tempfile

        from capdistill.engine.setup import build_runner
        cfg.work_dir = tempfile.mkdtemp(prefix='capdistill_epoch_')
        cfg.train_cfg.max_epochs = 1
        # mmengine validates after the last epoch whatever the interval, from val_begin on
        cfg.train_cfg.val_begin = 2
        try:
            runner = build_runner(cfg)
            t0 = time.perf_counter()
            runner.train()
            epoch = time.perf_counter() - t0
            iters = len(runner.train_dataloader)
            validated = any(k.startswith('val/') for k in runner.message_hub.log_scalars)
        finally:
            shutil.rmtree(cfg.work_dir, ignore_errors=True)
        out.update(epoch_s=epoch, iterations=iters, iter_s=epoch / iters, validated=validated)
    out['seconds'] = time.perf_counter() - start
    out['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _count(root):
    with open(os.path.join(root, 'language', 'msrvtt_caption.json')) as f:
        data = json.load(f)
    return len(data.get('videos') or {s['video_id'] for s in data['sentences']}), \
        len(data['sentences'])


def main(argv=None):
    args = parse_args(argv)
    if args.phase:
        root = args.roots[0]
        print('RESULT ' + json.dumps(run_phase(args, root)))
        return 0
    results = _load_results(args.results) if args.results else measure(args)
    sizes = {r['videos']: r for r in results}
    for videos, seconds in args.timed_epoch:
        if videos not in sizes:
            _parser().error(f'--timed-epoch {videos}=...: no row of {videos} videos '
                            f'(rows: {sorted(sizes)})')
        sizes[videos]['epoch'] = dict(epoch_s=seconds, source='timed elsewhere')
    print(table(results))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)
    if args.plot:
        plot(results, args.plot)
    return 0


def measure(args):
    """Every phase on every root, each in its own subprocess: one row per root."""
    for root in args.roots:
        if not os.path.isfile(os.path.join(root, 'language', 'msrvtt_caption.json')):
            raise FileNotFoundError(f'{root}: no language/msrvtt_caption.json; make it with '
                                    'tools/analysis/make_synthetic_msrvtt.py --root ROOT')
    results = []
    for root in args.roots:
        videos, captions = _count(root)
        row = dict(root=root, videos=videos, captions=captions)
        for phase in args.phases:
            cmd = [sys.executable, os.path.abspath(__file__), root, '--phase', phase,
                   '--config', args.config, '--loader-batches', str(args.loader_batches),
                   '--train-steps', str(args.train_steps), '--scorers', *args.scorers]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            lines = [x for x in proc.stdout.splitlines() if x.startswith('RESULT ')]
            if proc.returncode or not lines:
                raise RuntimeError(f'phase {phase} on {root} failed:\n{proc.stderr[-2000:]}')
            row[phase] = json.loads(lines[-1][7:])
            print(f'{videos:>6} videos  {phase:<10} ' + ', '.join(
                f'{k}={v:.3g}' if isinstance(v, float) else f'{k}={v}'
                for k, v in row[phase].items()), flush=True)
        results.append(row)
    return results


def _load_results(path):
    from capdistill.datasets.annotations import DataError
    with open(path) as f:  # a missing file: FileNotFoundError, named
        try:
            results = json.load(f)
        except ValueError:  # not json (UnicodeDecodeError is one too)
            results = None
    if not (isinstance(results, list) and results and all(
            isinstance(r, dict) and isinstance(r.get('videos'), int) for r in results)):
        raise DataError(f'{path}: not a results file written by benchmark_scale.py --out '
                        '(a list of rows, one per size, each with "videos"). Measure again '
                        'with --out FILE.')
    return results


def table(results):
    """A markdown table, one row per size; (MB) is a phase's peak resident memory."""
    head = ('| videos | captions | build cold s (MB) | build warm s (MB) | loader samples/s (MB) '
            '| train step s (MB) | epoch s (implied) | epoch s (timed) | test videos '
            '| decode s | metric s | evaluation MB |')
    lines = [head, '|' + '---|' * (head.count('|') - 1)]
    for r in results:
        def g(phase, key, fmt='{:.1f}'):
            v = r.get(phase, {}).get(key)
            return fmt.format(v) if isinstance(v, (int, float)) else '-'

        def mb(phase):
            return g(phase, 'peak_rss_mb', '{:.0f}')
        lines.append(
            f'| {r["videos"]} | {r["captions"]} '
            f'| {g("build_cold", "seconds")} ({mb("build_cold")}) '
            f'| {g("build_warm", "seconds")} ({mb("build_warm")}) '
            f'| {g("loader", "samples_per_s", "{:.0f}")} ({mb("loader")}) '
            f'| {g("train", "step_s", "{:.2f}")} ({mb("train")}) '
            f'| {g("train", "epoch_s", "{:.0f}")} | {g("epoch", "epoch_s", "{:.0f}")} '
            f'| {g("eval", "videos", "{}")} '
            f'| {g("eval", "decode_s")} | {g("eval", "metric_s")} | {mb("eval")} |')
    return '\n'.join(lines)


def plot(results, path):
    """Seconds (and MB) against videos, log-log, with a linear reference."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    xs = [r['videos'] for r in results]
    fig, ax = plt.subplots(figsize=(8.4, 4.2))
    series = [('build_cold', 'seconds', 'dataset build, cold (s)'),
              ('build_warm', 'seconds', 'dataset build, warm (s)'),
              ('build_cold', 'peak_rss_mb', 'build peak memory (MB)'),
              ('train', 'epoch_s', 'training epoch, implied (s)'),
              ('epoch', 'epoch_s', 'training epoch, timed (s)'),
              ('eval', 'decode_s', 'test decoding (s)'),
              ('eval', 'metric_s', 'test metric (s)')]
    for phase, key, label in series:
        points = [(x, r.get(phase, {}).get(key)) for x, r in zip(xs, results)]
        points = [(x, y) for x, y in points if isinstance(y, (int, float))]
        if points:  # a series measured at some sizes only is drawn where it was
            ax.plot(*zip(*points), marker='o', label=label)
    lo = min(xs)
    ax.plot(xs, [x / lo for x in xs], 'k--', lw=0.8, label='linear (x / smallest)')
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('videos (20 captions each)')
    ax.set_title('capdistill costs against data set size (synthetic MSR-VTT)')
    ax.legend(fontsize=7, loc='center left', bbox_to_anchor=(1.02, 0.5))  # off the lines
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == '__main__':
    from capdistill.utils.cli import friendly_main
    sys.exit(friendly_main(main)())
