"""Distillation runs through the tools: the teacher stays frozen, 2-process dist_train works.

The teacher is a real (tiny) trained run's checkpoint. A plugin hook, imported through
``custom_imports``, saves the teacher's and the student's weights on rank 0 before and
after training, so the test compares what the run actually held in memory.
"""
import os
import sys

import pytest
import torch

from conftest import REPO, free_port, run_tool, write_tiny_config

SNAPSHOT_HOOK = '''
import os

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from capdistill.registry import HOOKS


@HOOKS.register_module()
class WeightSnapshotHook(Hook):
    """Saves the teacher's and the student's weights before and after training."""

    priority = 'VERY_LOW'  # after every other hook's before_train

    def __init__(self, share_word_embedding=False):
        self.share_word_embedding = share_word_embedding

    def _save(self, runner, name):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if is_main_process():
            state = {part: {k: v.detach().cpu().clone()
                            for k, v in getattr(model, part).state_dict().items()}
                     for part in ('teacher', 'student')}
            torch.save(state, os.path.join(runner.work_dir, f'snapshot_{name}.pt'))

    def before_train(self, runner):
        if self.share_word_embedding:
            # a broken freeze: the teacher shares a trained parameter with the student
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            model.teacher.head.word_embed.weight = model.student.head.word_embed.weight
        self._save(runner, 'before')

    def after_train(self, runner):
        self._save(runner, 'after')
'''
KD_MODEL = ("dict(type='DistillAlgorithm', student=_student, teacher=_teacher, "
            "teacher_ckpt='{ckpt}', teacher_check_interval={interval}, "
            "distill_losses=dict(loss_word=dict(type='WordKLLoss', tau=2.0)))")


@pytest.fixture(scope='module')
def teacher_run(tmp_path_factory, tiny_root):
    """A one-epoch teacher trained through tools/train.py, and the snapshot plugin."""
    work = tmp_path_factory.mktemp('teacher')
    cfg = write_tiny_config(work / 'teacher.py', tiny_root)
    res = run_tool(['tools/train.py', cfg, '--work-dir', str(work),
                    '--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=5'])
    assert res.returncode == 0, res.stderr[-3000:]
    (work / 'snapshot_plugin.py').write_text(SNAPSHOT_HOOK)
    return work


def _kd_config(path, tiny_root, teacher_run, interval=100, **hook):
    return write_tiny_config(
        path, tiny_root,
        model=KD_MODEL.format(ckpt=teacher_run / 'epoch_1.pth', interval=interval),
        custom_imports=dict(imports=['snapshot_plugin'], allow_failed_imports=False),
        custom_hooks=[dict(type='WeightSnapshotHook', **hook)])


def changed_teacher_weights(work):
    """Names of the teacher's tensors that differ after training (empty: frozen)."""
    before = torch.load(work / 'snapshot_before.pt', weights_only=True)['teacher']
    after = torch.load(work / 'snapshot_after.pt', weights_only=True)['teacher']
    assert before.keys() == after.keys() and len(before) > 5
    return sorted(k for k in before if not torch.equal(before[k], after[k]))


def test_dist_train_of_a_distillation_config_keeps_the_teacher_frozen(teacher_run, tiny_root,
                                                                      tmp_path):
    cfg = _kd_config(tmp_path / 'kd.py', tiny_root, teacher_run)
    env = dict(PYTHON=sys.executable, PORT=str(free_port()),
               PYTHONPATH=f'{REPO}{os.pathsep}{teacher_run}')
    res = run_tool(['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', str(tmp_path),
                    '--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=5'],
                   env=env)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert 'Distributed training: True' in log and 'distill.loss_word' in log
    # 24 training captions / (2 processes x batch 4) = 3 iterations per process
    assert 'Epoch(train) [1][3/3]' in log
    # the teacher the run held is the trained teacher's checkpoint, unchanged by training
    trained = torch.load(teacher_run / 'epoch_1.pth', weights_only=False)['state_dict']
    before = torch.load(tmp_path / 'snapshot_before.pt', weights_only=True)
    assert all(torch.equal(before['teacher'][k], trained[k]) for k in before['teacher'])
    assert changed_teacher_weights(tmp_path) == []
    # ... while the student did train, and only the student is checkpointed
    ckpt = torch.load(tmp_path / 'epoch_1.pth', weights_only=False)['state_dict']
    assert all(k.startswith('student.') for k in ckpt)
    student = before['student']
    assert any(not torch.equal(student[k], ckpt[f'student.{k}']) for k in student)


def test_a_broken_freeze_is_caught(teacher_run, tiny_root, tmp_path):
    """The check above can fail: a teacher sharing a parameter with the student changes."""
    cfg = _kd_config(tmp_path / 'kd.py', tiny_root, teacher_run, interval=0,
                     share_word_embedding=True)
    res = run_tool(['tools/train.py', cfg, '--work-dir', str(tmp_path), '--cfg-options',
                    'train_cfg.max_epochs=1', 'train_cfg.val_interval=5'],
                   env=dict(PYTHONPATH=f'{REPO}{os.pathsep}{teacher_run}'))
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert changed_teacher_weights(tmp_path) == ['head.word_embed.weight']
