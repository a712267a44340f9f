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
