"""The benchmark tools run on tiny data and measure what they say (no timing asserts)."""
import json
import os
import sys

import pytest

from conftest import REPO, write_tiny_config

sys.path.insert(0, os.path.join(REPO, 'tools', 'analysis'))

KD = ("dict(type='DistillAlgorithm', student=_student, teacher=_teacher, "
      "distill_losses=dict(loss_word=dict(type='WordKLLoss')))")


def test_distill_step_benchmark_reads_its_teacher_cache(tiny_root, tmp_path):
    import benchmark_distill_step
    student = write_tiny_config(tmp_path / 'student.py', tiny_root, model='_student')
    kd = write_tiny_config(tmp_path / 'kd.py', tiny_root, model=KD)
    cache = tmp_path / 'cache'
    res = benchmark_distill_step.main([student, kd, '--batches', '2', '--repeats', '1',
                                       '--topk', '4', '--cache-dir', str(cache)])
    # the first pass wrote one file per caption, warm-up and timed pass read each of them
    assert res['cache_files'] == res['captions'] == 8
    assert res['misses'] == res['captions'] and res['hits'] == 2 * res['captions']
    assert res['checked_batches'] == 1  # the first read, in the warm-up
    assert res['cache_bytes'] > 0 and res['ratio_kd'] > 0 and res['ratio_kd_cache'] > 0


def test_synthetic_msrvtt_has_the_reference_layout(tmp_path):
    import numpy as np

    from capdistill.datasets.annotations import load_captions, load_split
    from make_synthetic_msrvtt import make
    info = make(str(tmp_path), num_videos=20, captions_per_video=4)
    assert info['splits'] == {'train': 13, 'validate': 1, 'test': 6}
    captions = load_captions(str(tmp_path / 'language' / 'msrvtt_caption.json'))
    assert len(captions) == 20 and all(len(c) == 4 for c in captions.values())
    test_ids = load_split(str(tmp_path / 'splits' / 'msrvtt_test_list.json'))
    assert len(test_ids) == 6
    for enc, dim in (('clip_b32', 512), ('clip_l14', 768)):
        arr = np.load(tmp_path / 'visual' / enc / 'frame_feature' / f'{test_ids[0]}.npy')
        assert arr.shape == (15, dim) and arr.dtype == np.float16
    with open(tmp_path / 'language' / 'msrvtt_caption.json') as f:
        assert {v['split'] for v in json.load(f)['videos']} == {'train', 'validate', 'test'}


def test_metric_benchmark_busy_core_is_pinned_and_stopped():
    import benchmark_metrics
    before = os.sched_getaffinity(0)
    try:
        cpus = benchmark_metrics.two_cpus()
        assert len(cpus) == 2 and os.sched_getaffinity(0) == set(cpus)
        with benchmark_metrics.BusyCore(cpus[1]) as busy:
            assert os.sched_getaffinity(busy.proc.pid) == {cpus[1]}
            assert busy.proc.poll() is None  # spinning
        assert busy.proc.poll() is not None  # stopped when the block ends
    finally:
        os.sched_setaffinity(0, before)
    preds, refs = benchmark_metrics.make_caption_set(3, 2)
    later = benchmark_metrics.new_predictions(refs, 1)
    assert set(later) == set(refs) and later != preds


def test_scale_benchmark_runs_its_phases_in_subprocesses(tmp_path):
    import benchmark_scale
    from make_synthetic_msrvtt import make
    root = str(tmp_path / 'synth')
    info = make(root, num_videos=40, captions_per_video=4)
    train_captions = info['splits']['train'] * 4
    out = tmp_path / 'scale.json'
    benchmark_scale.main([root, '--phases', 'build_cold', 'loader', '--loader-batches', '1',
                          '--out', str(out)])
    row, = json.loads(out.read_text())
    assert (row['videos'], row['captions']) == (40, 160)
    assert row['build_cold']['samples'] == train_captions
    cache = os.path.join(root, 'language', '.capdistill_cache')
    assert os.path.isdir(cache) and os.listdir(cache)  # the cold build wrote its cache
    # after an untimed first batch of the config's 64 and the feature files read once,
    # one timed batch: the rest of the epoch here
    assert row['loader']['samples'] == min(64, train_captions - 64) > 0
    assert row['loader']['samples_per_s'] > 0


def test_scale_benchmark_times_a_real_epoch(tmp_path, monkeypatch, capsys):
    """The epoch phase trains one epoch through the Runner in its subprocess (13 training
    captions: one iteration at the config's batch of 64), without the validation mmengine
    runs after a last epoch, and leaves no work dir behind."""
    import benchmark_scale
    from make_synthetic_msrvtt import make
    root = str(tmp_path / 'synth')
    info = make(root, num_videos=20, captions_per_video=1)
    scratch = tmp_path / 'tmp'
    scratch.mkdir()
    monkeypatch.setenv('TMPDIR', str(scratch))  # where the phase makes its work dir
    out = tmp_path / 'scale.json'
    benchmark_scale.main([root, '--phases', 'epoch', '--out', str(out)])
    row, = json.loads(out.read_text())
    epoch = row['epoch']
    assert epoch['iterations'] == -(-info['splits']['train'] // 64) == 1
    assert epoch['epoch_s'] > 0 and epoch['iter_s'] == epoch['epoch_s']
    assert epoch['validated'] is False  # the epoch alone
    # its work dir was removed (torch may leave its own compile cache folder there)
    assert [p.name for p in scratch.iterdir() if p.name.startswith('capdistill_epoch_')] == []
    table = capsys.readouterr().out
    assert 'epoch s (timed)' in table
    assert f'| {epoch["epoch_s"]:.0f} |' in table.splitlines()[-1]


def test_scale_benchmark_redraws_a_saved_run_with_epochs_timed_elsewhere(tmp_path, capsys):
    """--results prints the table and draws the plot from a saved --out file without
    measuring; --timed-epoch fills the timed column of the rows it names only."""
    import subprocess

    import benchmark_scale
    rows = [dict(videos=v, captions=20 * v, train=dict(step_s=10.0, epoch_s=float(v)))
            for v in (100, 300)]
    saved = tmp_path / 'scale.json'
    saved.write_text(json.dumps(rows))
    out, plot = tmp_path / 'again.json', tmp_path / 'scale.png'
    benchmark_scale.main(['--results', str(saved), '--timed-epoch', '300=1234.4',
                          '--out', str(out), '--plot', str(plot)])
    first, second = capsys.readouterr().out.strip().splitlines()[-2:]
    assert first.startswith('| 100 |') and '| 100 | - |' in first  # implied, not timed
    assert second.startswith('| 300 |') and '| 300 | 1234 |' in second
    again = json.loads(out.read_text())
    assert again[1]['epoch']['epoch_s'] == 1234.4 and 'epoch' not in again[0]
    assert plot.read_bytes().startswith(b'\x89PNG')

    # bad arguments: the script itself once, then its main as the script wraps it
    script = os.path.join(REPO, 'tools', 'analysis', 'benchmark_scale.py')
    proc = subprocess.run([sys.executable, script, '--results', str(saved), '--timed-epoch',
                           '500=10'], capture_output=True, text=True)
    assert proc.returncode != 0
    assert 'no row of 500' in proc.stderr and 'Traceback' not in proc.stderr, proc.stderr
    from capdistill.utils.cli import friendly_main
    for bad, says in ((['--results', str(saved), '--timed-epoch', '300'], 'VIDEOS=SECONDS'),
                      (['--results', str(tmp_path / 'none.json')], 'none.json'),
                      (['--results', str(plot)], 'not a results file'),
                      ([str(tmp_path), '--results', str(saved)], 'not both')):
        with pytest.raises(SystemExit) as stop:
            friendly_main(benchmark_scale.main)(bad)
        assert stop.value.code != 0
        assert says in capsys.readouterr().err
