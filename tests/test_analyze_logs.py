"""tools/analysis/analyze_logs.py on the scalars.json of a real (tiny) training run."""
import shutil

import pytest

from conftest import run_tool, write_tiny_config

pytest.importorskip('matplotlib')


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory, tiny_root):
    work = tmp_path_factory.mktemp('curves')
    cfg = write_tiny_config(work / 'teacher.py', tiny_root)
    res = run_tool(['tools/train.py', cfg, '--work-dir', str(work / 'run_a'),
                    '--cfg-options', 'train_cfg.max_epochs=2',
                    'default_hooks.checkpoint.interval=100'])
    assert res.returncode == 0, res.stderr[-3000:]
    return work


def test_series_reads_train_and_val_scalars(tiny_run):
    import sys
    sys.path.insert(0, 'tools/analysis')
    from analyze_logs import find_scalars, load_scalars, series
    records = load_scalars(find_scalars(str(tiny_run / 'run_a')))
    steps, loss = series(records, 'loss')
    assert len(loss) >= 6 and steps == sorted(steps)  # logged every iteration, 2 epochs
    epochs, cider = series(records, 'CIDEr')
    assert epochs == [1, 2] and all(v >= 0 for v in cider)


def test_plot_curve_several_runs(tiny_run, tmp_path):
    shutil.copytree(tiny_run / 'run_a', tiny_run / 'run_b', dirs_exist_ok=True)
    out = tmp_path / 'fig.png'
    res = run_tool(['tools/analysis/analyze_logs.py', 'plot_curve', str(tiny_run / 'run_a'),
                    str(tiny_run / 'run_b'), '--keys', 'loss', 'CIDEr', '--legend', 'a', 'b',
                    '--out', str(out)])
    assert res.returncode == 0, res.stderr[-2000:]
    data = out.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 5000
    bad = run_tool(['tools/analysis/analyze_logs.py', 'plot_curve', str(tiny_run / 'run_a'),
                    '--keys', 'nonsense', '--out', str(tmp_path / 'x.png')])
    assert bad.returncode == 1 and bad.stderr.startswith('error: none of')
    assert 'CIDEr' in bad.stderr and 'Traceback' not in bad.stderr


def test_resumed_work_dir_is_one_curve(tiny_run, tmp_path):
    import sys
    sys.path.insert(0, 'tools/analysis')
    from analyze_logs import load_run, series
    work = tmp_path / 'resumed'
    shutil.copytree(tiny_run / 'run_a', work)
    cfg = str(tiny_run / 'teacher.py')
    res = run_tool(['tools/train.py', cfg, '--work-dir', str(work), '--resume',
                    '--cfg-options', 'train_cfg.max_epochs=3',
                    'default_hooks.checkpoint.interval=100'])
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(list(work.glob('*/vis_data/scalars.json'))) == 2
    records = load_run(str(work))
    steps, _ = series(records, 'loss')
    assert steps == list(range(1, 19))  # 6 iterations x 3 epochs, the first two from run 1
    epochs, _ = series(records, 'CIDEr')
    assert epochs == [1, 2, 3]
    out = tmp_path / 'fig.png'
    res = run_tool(['tools/analysis/analyze_logs.py', 'plot_curve', str(work), '--keys', 'loss',
                    'CIDEr', '--out', str(out)])
    assert res.returncode == 0 and out.read_bytes()[:4] == b'\x89PNG'
