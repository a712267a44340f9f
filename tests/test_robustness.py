"""Runs that can be repeated, killed, resumed and distributed without changing results."""
import json
import os
import signal
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from capdistill.engine.hooks.run_guards import FiniteLossHook, NonFiniteLossError
from capdistill.utils import CheckpointError, load_full_checkpoint, trust_directory
from capdistill.utils.checkpoint import UntrustedCheckpointWarning
from conftest import REPO, run_tool, run_tool_here, write_tiny_config

EPOCHS = ['--cfg-options', 'train_cfg.max_epochs=3']


def _train(cfg, work, *extra):
    res = run_tool(['tools/train.py', cfg, '--work-dir', str(work)] + list(extra))
    return res


def _weights(path):
    return load_full_checkpoint(path)['state_dict']


def _last_val(work):
    records = []
    for log in sorted(work.glob('*/vis_data/scalars.json')):
        records += [json.loads(line) for line in open(log)]
    return [r for r in records if 'CIDEr' in r][-1]


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, tiny_root):
    work = tmp_path_factory.mktemp('full')
    cfg = write_tiny_config(work / 'cfg.py', tiny_root)
    res = _train(cfg, work, *EPOCHS)
    assert res.returncode == 0, res.stderr[-3000:]
    return cfg, work


def test_same_seed_gives_bitwise_identical_weights(uninterrupted, tmp_path):
    cfg, work = uninterrupted
    res = _train(cfg, tmp_path, *EPOCHS)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = _weights(work / 'epoch_3.pth'), _weights(tmp_path / 'epoch_3.pth')
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _killed_at(iteration, tmp_path, tiny_root):
    """The tiny config, and a copy of it whose process is SIGKILLed at ``iteration``."""
    cfg = write_tiny_config(tmp_path / 'cfg.py', tiny_root)
    killing = tmp_path / 'killing.py'
    killing.write_text(
        f"_base_ = ['{cfg}']\n"
        "custom_imports = dict(imports=['tests.plugins.kill_hook'], allow_failed_imports=False)\n"
        f"custom_hooks = [dict(type='KillAtIterHook', iteration={iteration})]\n")
    return cfg, str(killing)


def test_killed_run_resumes_to_the_same_result(uninterrupted, tiny_root, tmp_path):
    _, full = uninterrupted
    cfg, killing = _killed_at(9, tmp_path, tiny_root)
    work = tmp_path / 'work'
    res = _train(killing, work, *EPOCHS)
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    # 6 iterations per epoch: killed in the middle of epoch 2, after epoch 1 was saved
    assert (work / 'epoch_1.pth').is_file() and not (work / 'epoch_2.pth').exists()
    res = _train(cfg, work, '--resume', *EPOCHS)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = _weights(full / 'epoch_3.pth'), _weights(work / 'epoch_3.pth')
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    va, vb = _last_val(full), _last_val(work)
    assert va['step'] == vb['step'] == 3
    assert all(abs(va[k] - vb[k]) <= 1e-6 for k in ('Bleu_4', 'ROUGE_L', 'CIDEr'))


def test_run_killed_inside_an_epoch_resumes_where_it_stopped(uninterrupted, tiny_root,
                                                              tmp_path):
    """A checkpoint every 4 iterations (6 per epoch): killed at iteration 10, the run
    resumes from iteration 8, inside epoch 2, and ends with the uninterrupted weights."""
    _, full = uninterrupted
    cfg, killing = _killed_at(10, tmp_path, tiny_root)
    every4 = ['--cfg-options', 'train_cfg.max_epochs=3',
              'default_hooks.mid_epoch_checkpoint.interval=4']
    work = tmp_path / 'work'
    res = _train(killing, work, *every4)
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    # iteration 4's checkpoint went when epoch 1's came; iteration 8's is the newest
    assert sorted(p.name for p in work.glob('*.pth')) == [
        'best_CIDEr_epoch_1.pth', 'epoch_1.pth', 'midepoch_iter_8.pth']
    assert (work / 'last_checkpoint').read_text().endswith('midepoch_iter_8.pth')
    res = _train(cfg, work, '--resume', *every4)
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert 'Resuming inside epoch 2: its first 2 batches' in log
    assert 'Epoch(train) [2][3/6]' in log and 'Epoch(train) [2][2/6]' not in log
    a, b = _weights(full / 'epoch_3.pth'), _weights(work / 'epoch_3.pth')
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the resumed run's epoch checkpoints replaced every mid-epoch one
    assert not list(work.glob('midepoch_iter_*.pth'))


def test_mid_epoch_checkpoint_resumes_only_the_run_it_fits():
    from capdistill.engine.loops import MidEpochResumeError, batches_done, mid_epoch_record
    record = mid_epoch_record(8, 1, 6, states=[{}, {}])
    assert batches_done(record, 1, 8, 6, 2) == 2
    assert batches_done(record, 2, 12, 6, 2) == 0  # an epoch checkpoint after it
    assert batches_done(None, 1, 6, 6, 2) == 0
    with pytest.raises(MidEpochResumeError, match='6 iterations per epoch; this one has 4'):
        batches_done(record, 1, 8, 4, 2)
    with pytest.raises(MidEpochResumeError, match='saved by 2 processes; this run has 1'):
        batches_done(record, 1, 8, 6, 1)


class _Recorded(torch.utils.data.Dataset):
    """Item i is i; the indices loaded in this process are recorded."""

    def __init__(self, n):
        self.n, self.loaded = n, []

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.loaded.append(i)
        return i


@pytest.mark.parametrize('workers', [0, 2])
def test_resumed_epoch_does_not_load_the_batches_it_skips(workers):
    """The batches after the first 3 of a shuffled epoch: the same as the full epoch's, in
    the same order, and (in this process) the skipped ones never loaded."""
    from mmengine.dataset import DefaultSampler

    from capdistill.engine.loops import batches_after

    def loader():
        data = _Recorded(22)
        sampler = DefaultSampler(data, shuffle=True, seed=5)
        sampler.set_epoch(1)
        return torch.utils.data.DataLoader(data, batch_size=4, sampler=sampler,
                                           num_workers=workers)
    full = [b.tolist() for b in loader()]
    resumed = loader()
    rest = batches_after(resumed, 3)
    assert len(rest) == len(full) - 3 == 3
    assert [b.tolist() for b in rest] == full[3:]
    skipped = sum(full[:3], [])
    assert sorted(skipped) != sorted(range(12))  # shuffled: the check below means something
    if workers == 0:
        assert sorted(resumed.dataset.loaded) == sorted(sum(full[3:], []))
    assert batches_after(resumed, 0) is resumed


def test_mid_epoch_checkpoints_need_the_resumable_loop(tiny_root, tmp_path):
    cfg = write_tiny_config(tmp_path / 'cfg.py', tiny_root)
    res = run_tool_here(['tools/train.py', cfg, '--work-dir', str(tmp_path / 'w'),
                         '--cfg-options', 'train_cfg.type=EpochBasedTrainLoop',
                         'default_hooks.mid_epoch_checkpoint.interval=2'])
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith('error: default_hooks.mid_epoch_checkpoint saves inside epochs, '
                           'which EpochBasedTrainLoop cannot resume'), res.stderr[-2000:]


def test_truncated_checkpoint_gives_a_clear_error(uninterrupted, tmp_path):
    cfg, work = uninterrupted
    broken = tmp_path / 'broken.pth'
    data = (work / 'epoch_3.pth').read_bytes()
    broken.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='damaged or incomplete'):
        load_full_checkpoint(broken)
    res = run_tool_here(['tools/test.py', cfg, str(broken), '--work-dir', str(tmp_path)])
    assert res.returncode == 1 and 'Traceback' not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith('error: ')


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    from mmengine.runner.checkpoint import save_checkpoint
    path = tmp_path / 'latest.pth'
    save_checkpoint({'w': torch.ones(3)}, str(path))

    def crash(*args):
        raise OSError('disk gone')

    monkeypatch.setattr(os, 'fsync', crash)  # dies after writing, before the rename
    with pytest.raises(OSError):
        save_checkpoint({'w': torch.zeros(1000)}, str(path))
    assert torch.equal(load_full_checkpoint(path)['w'], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['latest.pth']


def test_foreign_full_checkpoint_warns(tmp_path):
    path = tmp_path / 'other' / 'model.pth'
    path.parent.mkdir()
    torch.save({'w': torch.ones(1)}, path)
    with pytest.warns(UntrustedCheckpointWarning, match='execute code'):
        load_full_checkpoint(path)
    own = tmp_path / 'own'
    own.mkdir()
    torch.save({'w': torch.ones(1)}, own / 'model.pth')
    trust_directory(own)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error', UntrustedCheckpointWarning)
        load_full_checkpoint(own / 'model.pth')


def test_own_run_checkpoint_loads_without_warning(uninterrupted, monkeypatch):
    import warnings

    from capdistill.utils import checkpoint
    _, work = uninterrupted
    monkeypatch.setattr(checkpoint, '_TRUSTED_DIRS', set())
    with warnings.catch_warnings():
        warnings.simplefilter('error', UntrustedCheckpointWarning)
        load_full_checkpoint(work / 'epoch_3.pth')  # a work dir tools/train.py made


def test_foreign_checkpoint_warns_once(tmp_path, recwarn):
    path = tmp_path / 'downloaded.pth'
    torch.save({'w': torch.ones(1)}, path)
    for _ in range(3):
        load_full_checkpoint(path)
    assert len([w for w in recwarn if w.category is UntrustedCheckpointWarning]) == 1


def test_nan_loss_stops_with_step_term_and_videos():
    runner = SimpleNamespace(iter=41, epoch=2)
    batch = dict(data_samples=dict(video_id=['vid007', 'vid003']))
    hook = FiniteLossHook()
    hook.after_train_iter(runner, 0, batch, dict(loss=torch.tensor(1.0)))
    with pytest.raises(NonFiniteLossError) as err:
        hook.after_train_iter(runner, 0, batch, dict(loss=torch.tensor(float('nan')),
                                                      **{'distill.loss_word': torch.tensor(float('inf'))}))
    msg = str(err.value)
    assert "'loss'" in msg and 'iteration 42' in msg and 'vid007, vid003' in msg


def test_epoch_seed_follows_diff_rank_seed():
    """Each epoch is re-seeded with seed + epoch, plus the rank when the config's
    randomness asks processes for different seeds."""
    from capdistill.engine.hooks.run_guards import EpochSeedHook

    def seeded(rank, **randomness):
        runner = SimpleNamespace(seed=7, epoch=2, rank=rank,
                                 cfg=dict(randomness=dict(seed=7, **randomness)))
        EpochSeedHook().before_train_epoch(runner)
        return torch.initial_seed()

    assert seeded(0) == seeded(1) == 9
    assert (seeded(0, diff_rank_seed=True), seeded(1, diff_rank_seed=True)) == (9, 10)


def test_ddp_gradients_equal_single_process(tmp_path):
    probe = os.path.join(REPO, 'tests', 'ddp_grad_probe.py')
    single, dist = tmp_path / 'single.pt', tmp_path / 'dist.pt'
    res = run_tool([probe, str(single)])
    assert res.returncode == 0, res.stderr[-2000:]
    res = run_tool([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
                    '--master_port=29677', probe, str(dist)])
    assert res.returncode == 0, res.stderr[-2000:]
    a = torch.load(single, weights_only=True)
    b = torch.load(dist, weights_only=True)
    assert a.keys() == b.keys() and len(a) > 10
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    assert sum(a[k].abs().sum().item() for k in a) > 0


def test_atomic_writes_have_normal_permissions(tmp_path):
    """Features and failure lists are readable by others as plain files are (umask 022)."""
    from capdistill.apis.extraction import save_npy_atomic
    from capdistill.utils.files import atomic_open
    old = os.umask(0o022)
    try:
        save_npy_atomic(tmp_path / 'vid1.npy', np.zeros(3, dtype=np.float32))
        with atomic_open(tmp_path / 'failures.txt', 'w') as f:
            f.write('x\n')
        with pytest.raises(RuntimeError):  # a failed write leaves nothing behind
            with atomic_open(tmp_path / 'broken.txt', 'w') as f:
                f.write('half')
                raise RuntimeError('interrupted')
    finally:
        os.umask(old)
    for name in ('vid1.npy', 'failures.txt'):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ['failures.txt', 'vid1.npy']
