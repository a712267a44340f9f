"""tools/analysis/run_kd_table.py: paired statistics, table generation, skipping, a real run."""
import importlib.util
import json
import math
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(REPO, 'tools', 'analysis', 'run_kd_table.py')
ENV = dict(os.environ, OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1')


def _tool():
    spec = importlib.util.spec_from_file_location('run_kd_table', TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, TOOL, *args], cwd=REPO, env=ENV, timeout=timeout,
                          capture_output=True, text=True)


def test_paired_difference_matches_scipy():
    kd = _tool()
    method = {0: 0.80, 1: 0.74, 2: 0.79, 3: 0.77, 4: 0.82}
    base = {0: 0.71, 1: 0.70, 2: 0.69, 3: 0.73, 4: 0.75}
    p = kd.paired_difference(method, base)
    diffs = np.array([method[s] - base[s] for s in range(5)])
    # independent: numpy mean/sd and scipy's paired t-test with its own interval
    half = stats.t.ppf(0.975, 4) * diffs.std(ddof=1) / math.sqrt(5)
    assert p['n'] == 5 and p['seeds'] == [0, 1, 2, 3, 4]
    assert p['mean'] == pytest.approx(diffs.mean())
    assert (p['lo'], p['hi']) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    ci = stats.ttest_rel(list(method.values()), list(base.values())).confidence_interval(0.95)
    assert (p['lo'], p['hi']) == pytest.approx((ci.low, ci.high))
    assert p['excludes_zero'] is True


def test_paired_difference_zero_inside_common_seeds_and_one_seed():
    kd = _tool()
    # seeds 5 and 6 exist on one side only: only the common seeds are paired
    method = {0: 0.70, 1: 0.78, 2: 0.66, 5: 0.99}
    base = {0: 0.72, 1: 0.71, 2: 0.69, 6: 0.10}
    p = kd.paired_difference(method, base)
    assert p['seeds'] == [0, 1, 2] and p['n'] == 3
    res = stats.ttest_rel([0.70, 0.78, 0.66], [0.72, 0.71, 0.69])
    assert p['excludes_zero'] is False and res.pvalue > 0.05
    assert p['lo'] < 0 < p['hi']
    one = kd.paired_difference({0: 0.8}, {0: 0.7})
    assert one['n'] == 1 and one['mean'] == pytest.approx(0.1)
    assert one['lo'] is None and one['excludes_zero'] is None


def _fixture(path):
    """TEST DATA, not results: a hand-written results.json in the tool's format."""
    def runs(ciders):
        return {str(s): dict(CIDEr=c, Bleu_4=0.2) for s, c in enumerate(ciders)}
    rows = {
        'teacher': dict(label='teacher (test data)', config='configs/capdemo/t.py',
                        kind='teacher', schedule='8e lr 0.0005', runs=runs([0.80]),
                        params=4_000_000, latency_ms=20.0),
        'scratch': dict(label='scratch (test data)', config='configs/kd/s.py', kind='baseline',
                        schedule='6e lr 0.0005', teacher='teacher',
                        runs=runs([0.60, 0.62, 0.64]), params=200_000, latency_ms=5.0),
        'good': dict(label='good KD (test data)', config='configs/kd/g.py', kind='method',
                     baseline='scratch', teacher='teacher', schedule='6e lr 0.0005',
                     runs=runs([0.70, 0.73, 0.74]), params=200_000, latency_ms=5.0),
        'noisy': dict(label='noisy KD (test data)', config='configs/kd/n.py', kind='method',
                      baseline='scratch', teacher='teacher', schedule='6e lr 0.0005 + 1e SCST',
                      why='fine-tunes', runs=runs([0.50, 0.75, 0.61]), params=200_000,
                      latency_ms=5.0),
        'missing': dict(label='not run (test data)', config='configs/kd/m.py', kind='method',
                        baseline='scratch', teacher='teacher', schedule='6e lr 0.0005', runs={}),
    }
    data = dict(meta=dict(cfg_options=[]), rows=rows,
                pending=[dict(key='p', label='future method', config='future_*.py')],
                uncovered=['stray_config.py'])
    with open(path, 'w') as f:
        json.dump(data, f)


def test_table_from_results_json(tmp_path):
    src = tmp_path / 'in.json'
    _fixture(src)
    kd = _tool()
    kd.main(['--from-json', str(src), '--out-dir', str(tmp_path / 'out'), '--readme', 'none'])
    md = (tmp_path / 'out' / 'results.md').read_text()
    lines = {line.split(' | ')[0].lstrip('| '): line for line in md.splitlines()
             if line.startswith('| ') and 'test data' in line}
    # good: diffs 0.10, 0.11, 0.10 -> +10.3, CI from scipy's paired t-test
    ci = stats.ttest_rel([0.70, 0.73, 0.74], [0.60, 0.62, 0.64]).confidence_interval()
    good = lines['good KD (test data)']
    assert f'+10.3 [{100 * ci.low:+.1f}, {100 * ci.high:+.1f}] (n=3' in good
    assert '| yes |' in good
    assert '90%' in good  # 0.7233 / 0.80
    assert '20.0x fewer' in good and '(0.25)' in good
    noisy = lines['noisy KD (test data)']
    assert '| no |' in noisy and 'differs from baseline: fine-tunes' in noisy
    assert 'not run yet' in lines['not run (test data)']
    assert 'future method (`future_*.py`)' in md and '`stray_config.py`' in md
    assert 'scipy.stats.t' in md
    data = json.loads((tmp_path / 'out' / 'results.json').read_text())
    assert data['rows']['good']['paired']['CIDEr']['excludes_zero'] is True
    # the README block is rewritten, the rest of the file kept
    readme = tmp_path / 'README.md'
    readme.write_text('intro\n<!-- kd-table:start -->\nold\n<!-- kd-table:end -->\noutro\n')
    kd.main(['--from-json', str(src), '--out-dir', str(tmp_path / 'out'),
             '--readme', str(readme)])
    text = readme.read_text()
    assert 'old' not in text
    assert text.startswith('intro\n') and text.endswith('outro\n') and 'good KD' in text


def test_bad_results_json_is_one_line(tmp_path, capsys):
    from capdistill.utils.cli import friendly_main
    bad = tmp_path / 'bad.json'
    bad.write_text('[1, 2]')
    with pytest.raises(SystemExit) as exc:
        friendly_main(_tool().main)(['--from-json', str(bad), '--out-dir', str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 1 and err.startswith('error:') and 'bad.json' in err
    assert '\n' not in err and 'Traceback' not in err


def test_every_kd_config_is_a_row_and_baselines_share_the_architecture():
    kd = _tool()
    rows, pending, uncovered = kd.resolve_rows()
    keys = {r['key'] for r in rows}
    assert not uncovered, f'configs/kd files in no table row: {uncovered}'
    for row in rows:
        if row['kind'] == 'method':
            assert row['baseline'] in keys, row
    from mmengine.config import Config
    ham = Config.fromfile(osp.join(REPO, 'configs/kd/baseline_student-ham_grid8_1xb64-6e_'
                                         'capdemo.py'))
    hier = Config.fromfile(osp.join(REPO, 'configs/kd/sftcaphier_teacher-to-student_grid16-'
                                          'grid8_1xb64-6e_capdemo.py'))
    assert ham.model.to_dict() == hier.model.student.to_dict()
    assert ham.optim_wrapper == hier.optim_wrapper and ham.train_cfg == hier.train_cfg


def test_finished_runs_are_skipped(tmp_path, capsys):
    stem = 'baseline_student_grid8_1xb64-6e_capdemo'
    for seed in (0, 1):
        wd = tmp_path / 'root' / stem / f'seed{seed}'
        wd.mkdir(parents=True)
        # TEST DATA: a finished run's test output, hand-written
        (wd / 'test.json').write_text(json.dumps(dict(aggregate=dict(CIDEr=0.5 + seed / 10,
                                                                     Bleu_4=0.1))))
    _tool().main(['--only', 'scratch', '--seeds', '0', '1', '--root', str(tmp_path / 'root'),
                  '--out-dir', str(tmp_path / 'out')])
    out = capsys.readouterr().out
    assert 'measured: 0 runs' in out and '2 finished runs skipped' in out
    assert not (tmp_path / 'root' / stem / 'seed0' / 'train.out').exists()
    data = json.loads((tmp_path / 'out' / 'results.json').read_text())
    assert {s: r['CIDEr'] for s, r in data['rows']['scratch']['runs'].items()} == {
        '0': 0.5, '1': 0.6}


def test_a_cost_that_cannot_be_measured_fails_the_table(tmp_path, capsys):
    """A finished run whose checkpoint cannot be read: the table is still written, its cost
    cells say so, and the tool exits with an error naming the row and the checkpoint."""
    wd = tmp_path / 'root' / 'baseline_student_grid8_1xb64-6e_capdemo' / 'seed0'
    wd.mkdir(parents=True)
    # TEST DATA: a finished run's test output, hand-written, beside a checkpoint that is not one
    (wd / 'test.json').write_text(json.dumps(dict(aggregate=dict(CIDEr=0.5, Bleu_4=0.1))))
    (wd / 'epoch_6.pth').write_text('not a checkpoint')
    with pytest.raises(SystemExit) as exc:
        _tool().main(['--only', 'scratch', '--seeds', '0', '--root', str(tmp_path / 'root'),
                      '--out-dir', str(tmp_path / 'out')])
    message = str(exc.value.code)
    assert message.startswith('error: cost of scratch not measured from ')
    assert str(wd / 'epoch_6.pth') in message
    data = json.loads((tmp_path / 'out' / 'results.json').read_text())
    assert data['rows']['scratch']['cost_error'] in message
    assert data['rows']['scratch']['runs']['0']['CIDEr'] == 0.5
    assert 'not measured (results.json: cost_error)' in (tmp_path / 'out' / 'results.md').read_text()


def test_a_row_that_cannot_run_fails_the_table(tmp_path):
    """A distilled row whose teacher checkpoint no row trains and no file holds: it does
    not run, the table says why in the row, and the tool exits with that reason."""
    kd = _tool()
    missing = str(tmp_path / 'no_teacher' / 'epoch_8.pth')
    wordkd = 'wordkd_teacher-to-student_grid16-grid8_1xb64-6e_capdemo'
    cfg = tmp_path / f'{wordkd}.py'  # the same row, reading a teacher nobody trained
    cfg.write_text(f"_base_ = ['{REPO}/configs/kd/{wordkd}.py']\n"
                   f"model = dict(teacher_ckpt='{missing}')\n")
    rows, pending, uncovered = kd.resolve_rows()
    rows = [dict(r, config=str(cfg)) if r['key'] == 'wordkd' else r for r in rows]
    kd.resolve_rows = lambda: (rows, pending, uncovered)
    scratch = tmp_path / 'root' / 'baseline_student_grid8_1xb64-6e_capdemo' / 'seed0'
    scratch.mkdir(parents=True)
    # TEST DATA: the baseline's finished run, hand-written, so that nothing trains here
    (scratch / 'test.json').write_text(json.dumps(dict(aggregate=dict(CIDEr=0.5, Bleu_4=0.1))))
    with pytest.raises(SystemExit) as exc:
        kd.main(['--only', 'wordkd', '--seeds', '0', '--root', str(tmp_path / 'root'),
                 '--out-dir', str(tmp_path / 'out')])
    message = str(exc.value.code)
    assert message.startswith(f'error: wordkd not run: needs {missing}: train the teacher')
    assert not (tmp_path / 'root' / wordkd).exists()
    data = json.loads((tmp_path / 'out' / 'results.json').read_text())
    assert data['rows']['wordkd']['blocked'].startswith(f'needs {missing}')
    assert data['meta']['ran'] == 0 and data['meta']['skipped'] == 1


def test_two_rows_two_seeds_end_to_end(tmp_path):
    """A real, tiny table: scratch and quality-weighted students, 1 epoch on 64 captions of
    a 40-video capdemo build of its own (``--data-root``)."""
    from capdistill.datasets.demo import make_demo_dataset
    demo = make_demo_dataset(str(tmp_path / 'capdemo'), seed=1, num_videos=40, verbose=False)
    args = ('--only', 'qualityweighted', '--seeds', '0', '1', '--workers', '2',
            '--root', str(tmp_path / 'root'), '--out-dir', str(tmp_path / 'out'),
            '--data-root', demo['root'],
            '--latency-videos', '2', '--cfg-options', 'train_cfg.max_epochs=1',
            'train_dataloader.dataset.indices=64', 'test_dataloader.dataset.indices=8',
            'test_evaluator.scorers=[Bleu,CIDEr]')
    proc = _run(*args, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert 'measured: 4 runs in' in proc.stdout
    data = json.loads((tmp_path / 'out' / 'results.json').read_text())
    rows = data['rows']
    # the teacher row comes along for the fraction column; nothing here distils from it
    assert set(rows) - {'teacher'} == {'scratch', 'qualityweighted'}
    for key in ('scratch', 'qualityweighted'):
        assert sorted(rows[key]['runs']) == ['0', '1']
        assert all(0 <= r['CIDEr'] < 10 and r['train_s'] > 0 for r in rows[key]['runs'].values())
        assert rows[key]['params'] > 0 and rows[key]['latency_ms'] > 0
        assert rows[key]['schedule'].startswith('1e')
    p = rows['qualityweighted']['paired']['CIDEr']
    diffs = [rows['qualityweighted']['runs'][s]['CIDEr'] - rows['scratch']['runs'][s]['CIDEr']
             for s in ('0', '1')]
    assert p['n'] == 2 and p['mean'] == pytest.approx(np.mean(diffs))
    md = (tmp_path / 'out' / 'results.md').read_text()
    assert 'quality-weighted' in md and 'train_cfg.max_epochs=1' in md
    assert f'capdemo build at `{demo["root"]}`' in md
    # every run read that build, none the repository's data/capdemo
    for name in ('baseline_student_grid8_1xb64-6e_capdemo.py',
                 'qualityweighted_student_grid8_1xb64-6e_capdemo.py'):
        text = (tmp_path / 'root' / 'configs' / name).read_text()
        assert 'data/capdemo' not in text and demo['root'] in text, name
    # each seed's own seed reached the run
    log = (tmp_path / 'root' / 'qualityweighted_student_grid8_1xb64-6e_capdemo' / 'seed1'
           / 'train.out').read_text()
    assert "'seed': 1" in log or 'seed: 1' in log or 'seed=1' in log
    mtime = (tmp_path / 'root' / 'qualityweighted_student_grid8_1xb64-6e_capdemo' / 'seed1'
             / 'test.json').stat().st_mtime
    again = _run(*args, timeout=120)
    assert again.returncode == 0 and 'measured: 0 runs' in again.stdout
    assert '4 finished runs skipped' in again.stdout
    assert (tmp_path / 'root' / 'qualityweighted_student_grid8_1xb64-6e_capdemo' / 'seed1'
            / 'test.json').stat().st_mtime == mtime


def test_runs_sharing_a_teacher_cache_wait_for_the_one_that_fills_it(tmp_path):
    """Two processes filling one cache at once can fail: the first run of a cache fills it
    alone, every other run (other rows, other seeds) of that cache waits for it."""
    kd = _tool()
    rows, _, _ = kd.resolve_rows()
    keep = [r for r in rows if r['key'] in ('teacher', 'scratch', 'rkl', 'tvd', 'jsd')]
    by_key = kd.describe(keep, [])
    caches = {r['key']: r['cache_dir'] for r in keep}
    assert caches['rkl'] == caches['tvd'] == caches['jsd'] and caches['scratch'] is None
    jobs, blocked = kd.plan(keep, by_key, [0, 1], str(tmp_path), [])
    assert not blocked
    runs = {j.name: j for j in jobs}
    filler = runs['rkl seed 0']
    for name in ('rkl seed 1', 'tvd seed 0', 'tvd seed 1', 'jsd seed 0', 'jsd seed 1'):
        assert filler in runs[name].deps, name
    assert not any(j.name.startswith(('rkl', 'tvd', 'jsd')) for j in filler.deps)
    assert not any(j.name.startswith('rkl') for j in runs['scratch seed 1'].deps)


def test_every_kd_config_has_a_readme_row():
    """configs/kd/README.md lists every config of the folder in a table row."""
    import glob
    readme = open(osp.join(REPO, 'configs', 'kd', 'README.md'), encoding='utf-8').read()
    listed = {line.split('`')[1] for line in readme.splitlines() if line.startswith('| `')}
    names = {osp.basename(p) for p in glob.glob(osp.join(REPO, 'configs', 'kd', '*.py'))
             if not osp.basename(p).startswith('_')}
    assert names and not names - listed, f'not in a README table: {sorted(names - listed)}'


def test_mistaken_option_stops_the_table_before_any_run(tmp_path):
    proc = _run('--only', 'qualityweighted', '--seeds', '0', '--root', str(tmp_path / 'root'),
                '--out-dir', str(tmp_path / 'out'), '--cfg-options', 'train_cfg.max_epoch=1')
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and "did you mean 'train_cfg.max_epochs'" in last
    assert not (tmp_path / 'root').exists() and not (tmp_path / 'out').exists()


def test_a_data_root_without_a_capdemo_build_stops_the_table(tmp_path):
    kd = _tool()
    with pytest.raises(kd.ConfigError, match=r'--data-root .*none: no capdemo build there '
                       r'\(meta.json missing\); make one with python tools/make_demo_data.py'):
        kd.main(['--only', 'qualityweighted', '--seeds', '0', '--root', str(tmp_path / 'root'),
                 '--out-dir', str(tmp_path / 'out'), '--data-root', str(tmp_path / 'none')])
    assert not (tmp_path / 'root').exists() and not (tmp_path / 'out').exists()
