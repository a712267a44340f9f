"""Plot training curves from mmengine's json scalar logs.

Examples::

    python tools/analysis/analyze_logs.py plot_curve work_dirs/run_a work_dirs/run_b \
        --keys loss CIDEr --legend baseline wordkd --out curves.png

Each LOG is a ``vis_data/scalars.json`` file, a timestamped run folder, or a work dir
(all its runs joined in time order: a resumed run continues the curve of the run it
resumed, and steps logged again after a resume replace the earlier ones). Every key
gets its own panel with one line per run, one legend below the panels; training keys
are plotted against the iteration, validation metrics against the epoch (or
iteration) mmengine logged them at.
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys


def find_scalars(path):
    """The ``scalars.json`` for a file, a run folder or a work dir (newest run)."""
    return find_all_scalars(path)[-1]


def find_all_scalars(path):
    """Every ``scalars.json`` of a file, a run folder or a work dir, oldest run first."""
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise FileNotFoundError(f'log not found: {path}; give a scalars.json file or a work dir')
    for pattern in ('scalars.json', 'vis_data/scalars.json', '*/vis_data/scalars.json'):
        # run folders are named by their start time (YYYYmmdd_HHMMSS): names sort in time
        found = sorted(glob.glob(osp.join(path, pattern)))
        if found:
            return found
    raise FileNotFoundError(f'no vis_data/scalars.json under {path}; was the run started '
                            'with mmengine\'s LocalVisBackend (the default runtime)?')


def load_scalars(path):
    """The json lines of a scalars file as a list of dicts (unreadable lines skipped)."""
    records = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a run still writing
    return records


def load_run(path):
    """The records of all runs under ``path`` joined in time order.

    A resumed run starts again at the step after its checkpoint; records of the earlier
    run from that step on (logged after the checkpoint, then lost) are dropped.
    """
    joined = []
    for scalars in find_all_scalars(path):
        records = load_scalars(scalars)
        train_steps = [r['step'] for r in records if 'step' in r and 'loss' in r]
        if train_steps and joined:
            start = min(train_steps)
            joined = [r for r in joined if not ('loss' in r and r.get('step', -1) >= start)]
        # a metric logged again for the same step (validation repeated after a resume)
        again = {(r.get('step'), k) for r in records if 'loss' not in r for k in r}
        joined = [r for r in joined if 'loss' in r
                  or not any((r.get('step'), k) in again for k in r if k != 'step')]
        joined += records
    return joined


def series(records, key):
    """``(steps, values)`` of ``key``; a key written with a prefix (``val/CIDEr``) matches."""
    xs, ys = [], []
    for i, rec in enumerate(records):
        name = key if key in rec else next(
            (k for k in rec if k.split('/')[-1] == key), None)
        if name is None or not isinstance(rec[name], (int, float)):
            continue
        xs.append(rec.get('step', i))
        ys.append(float(rec[name]))
    return xs, ys


def plot_curve(logs, keys, out, legend=None, title=None):
    """Plot ``keys`` of each run in ``logs`` to the image ``out``; returns the path."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    if legend is not None and len(legend) != len(logs):
        raise ValueError(f'--legend has {len(legend)} names for {len(logs)} logs')
    files = [find_scalars(p) for p in logs]
    runs = [load_run(p) for p in logs]
    names = legend or [_run_name(f) for f in files]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    plotted = 0
    for ax, key in zip(axes[0], keys):
        for records, name in zip(runs, names):
            xs, ys = series(records, key)
            if not xs:
                continue
            marker = 'o' if len(xs) <= 30 else None
            ax.plot(xs, ys, label=name, marker=marker, markersize=3)
            plotted += 1
        ax.set_title(key)
        ax.set_xlabel('iteration' if _is_train_key(runs, key) else 'epoch / step')
        ax.grid(alpha=0.3)
    if plotted == 0:
        plt.close(fig)
        available = sorted({k for r in runs for rec in r for k in rec} - {'step'})
        raise ValueError(f'none of {keys} is in the logs; available keys: {available}')
    if title:
        fig.suptitle(title)
    # one legend for all panels, below them, so it never covers a curve
    handles, labels = {}, []
    for ax in axes[0]:
        for line in ax.lines:
            handles.setdefault(line.get_label(), line)
    fig.legend(list(handles.values()), list(handles), loc='lower center',
               ncol=min(len(handles), 4), fontsize=8, frameon=False)
    rows = (len(handles) + 3) // 4
    fig.tight_layout(rect=(0, 0.06 + 0.05 * rows, 1, 1))
    parent = osp.dirname(osp.abspath(out))
    os.makedirs(parent, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _is_train_key(runs, key):
    for records in runs:
        for rec in records:
            if key in rec:
                return 'lr' in rec or 'iter' in rec
    return False


def _run_name(scalars_file):
    # <work_dir>/<timestamp>/vis_data/scalars.json -> work_dir's name
    parts = osp.abspath(scalars_file).split(os.sep)
    if len(parts) >= 4 and parts[-2] == 'vis_data':
        return parts[-4]
    return osp.basename(osp.dirname(scalars_file)) or scalars_file


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Analyse mmengine training logs')
    sub = parser.add_subparsers(dest='task', required=True)
    curve = sub.add_parser('plot_curve', help='loss / metric curves to an image')
    curve.add_argument('logs', nargs='+', help='scalars.json files, run folders or work dirs')
    curve.add_argument('--keys', nargs='+', default=['loss'],
                       help='scalars to plot, one panel each (e.g. loss CIDEr)')
    curve.add_argument('--legend', nargs='+', help='a name per log')
    curve.add_argument('--title')
    curve.add_argument('--out', required=True, help='image file (png, pdf, svg)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        out = plot_curve(args.logs, args.keys, args.out, legend=args.legend, title=args.title)
    except (FileNotFoundError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    print(f'curves of {", ".join(args.keys)} for {len(args.logs)} run(s) written to {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
