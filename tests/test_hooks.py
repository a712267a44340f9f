"""Loss-weight schedules, student EMA, sample captions and the teacher check in a run."""
import math
import types

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from capdistill.engine.hooks import LossWeightScheduleHook, resolve_target, schedule_value
from conftest import write_tiny_config

MODEL = ("dict(type='DistillAlgorithm', student=_student, teacher=_teacher, "
         "allow_random_teacher=True, "
         "distill_losses=dict(loss_word=dict(type='WordKLLoss', tau=2.0, loss_weight=0.0)))")


def test_schedule_values_by_hand():
    assert schedule_value('constant', 0.7, 2.0, 5.0) == 2.0
    assert schedule_value('linear', 0.25, 0.0, 2.0) == pytest.approx(0.5)
    assert schedule_value('cosine', 0.0, 1.0, 0.0) == pytest.approx(1.0)
    assert schedule_value('cosine', 0.5, 1.0, 0.0) == pytest.approx(0.5)
    assert schedule_value('cosine', 1 / 3, 1.0, 0.0) == pytest.approx(0.75)
    assert schedule_value('linear', 2.0, 0.0, 2.0) == 2.0          # clamped after the span
    assert schedule_value('step', 0.5, 1.0, 0.0, (0.6,)) == 1.0
    assert schedule_value('step', 0.6, 1.0, 0.0, (0.6,)) == 0.0
    with pytest.raises(ValueError, match='policy'):
        schedule_value('exp', 0.5, 1, 2)


def test_targets_resolve_to_weights():
    losses = {'loss_word': types.SimpleNamespace(loss_weight=1.0)}
    sft = types.SimpleNamespace(t=0.5, lam_o=0.1)
    model = types.SimpleNamespace(distill_losses=losses, student_loss_weight=1.0, student=sft)
    assert resolve_target(model, 'student') == (model, 'student_loss_weight')
    assert resolve_target(model, 'distill.loss_word') == (losses['loss_word'], 'loss_weight')
    assert resolve_target(model, 'loss_word') == (losses['loss_word'], 'loss_weight')
    assert resolve_target(model, 't') == (sft, 't')
    assert resolve_target(model, 'student.lam_o') == (sft, 'lam_o')
    with pytest.raises(ValueError, match="no target 'nope'"):
        resolve_target(model, 'nope')
    hook = LossWeightScheduleHook(dict(t=dict(policy='linear', start=0.5, end=0.0,
                                              begin_frac=0.5)))
    assert hook.value_at('t', 25, 100) == 0.5
    assert hook.value_at('t', 75, 100) == pytest.approx(0.25)


def test_hooks_in_a_distillation_run(tmp_path, tiny_root):
    cfg_path = write_tiny_config(tmp_path / 'kd.py', tiny_root, model=MODEL)
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=2)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2)
    cfg.val_evaluator = dict(type='CaptionMetric', scorers=['Bleu'])
    cfg.custom_hooks = [
        dict(type='LossWeightScheduleHook', schedules=dict(
            loss_word=dict(policy='linear', start=0.0, end=1.0),
            student=dict(policy='cosine', start=1.0, end=0.5))),
        dict(type='StudentEMAHook', momentum=0.5),
        dict(type='CaptionSamplesHook', num_samples=2),
        dict(type='TeacherFrozenCheckHook')]
    runner = Runner.from_cfg(cfg)
    runner.train()
    model = runner.model
    n = runner.max_iters
    assert model.distill_losses['loss_word'].loss_weight == pytest.approx((n - 1) / n)
    assert model.student_loss_weight == pytest.approx(
        0.5 + 0.5 * (1 + math.cos(math.pi * (n - 1) / n)) / 2)
    ema = [h for h in runner.hooks if type(h).__name__ == 'StudentEMAHook'][0]
    assert ema.src_model is model.student
    assert not any(k.startswith('teacher') for k in ema.ema_model.state_dict())
    ckpt = torch.load(str(tmp_path / 'work' / 'epoch_2.pth'), weights_only=False)
    assert all(k.startswith('module.') or k == 'steps' for k in ckpt['ema_state_dict'])
    assert all(k.startswith('student.') for k in ckpt['state_dict'])
    # the checkpoint's student holds the averaged weights, the live student the raw ones
    key = 'student.head.word_embed.weight'
    assert torch.equal(ckpt['state_dict'][key], ema.ema_model.module.head.word_embed.weight)
    files = [h.baseFilename for h in runner.logger.handlers if hasattr(h, 'baseFilename')]
    log = open(files[0]).read()
    assert 'train/weight.loss_word' in runner.message_hub.log_scalars
    assert 'Sample captions' in log and 'teacher:' in log and 'reference:' in log


def _hook_names(cfg, work):
    from capdistill.engine.setup import build_runner
    cfg.work_dir = str(work)
    return [type(h).__name__ for h in build_runner(cfg).hooks]


def test_run_guards_stay_when_a_config_lists_its_own_hooks(tmp_path, tiny_root):
    """A config's ``custom_hooks`` list replaces its base's (mmengine merges lists whole): the
    run guards are default hooks, so they stay; ``default_hooks=dict(<name>=None)`` is the
    one way to switch one off."""
    from capdistill.engine.setup import read_config
    guards = {'EpochSeedHook', 'FiniteLossHook', 'DataRequirementsHook'}
    path = write_tiny_config(tmp_path / 'own_hooks.py', tiny_root,
                             custom_hooks=[dict(type='CaptionSamplesHook', num_samples=1)])
    names = _hook_names(read_config(path), tmp_path / 'a')
    assert guards | {'CaptionSamplesHook', 'CheckpointHook'} <= set(names)
    assert all(names.count(g) == 1 for g in guards)
    names = _hook_names(read_config(path, {'default_hooks.finite_loss': None}), tmp_path / 'b')
    assert 'FiniteLossHook' not in names and guards - {'FiniteLossHook'} <= set(names)
    # mmengine's own default hooks keep mmengine's meaning of None
    names = _hook_names(read_config(path, {'default_hooks.checkpoint': None}), tmp_path / 'c')
    assert 'CheckpointHook' not in names and guards <= set(names)
    # a misspelled name would switch nothing off: one line naming the close ones
    from capdistill.engine.config_check import ConfigError
    with pytest.raises(ConfigError, match="default_hooks.finite_los.*'default_hooks.finite_loss'"):
        _hook_names(read_config(path, {'default_hooks.finite_los': None}), tmp_path / 'd')


def test_a_runner_of_a_shipped_base_refuses_another_configs_checkpoint(tmp_path, tiny_root):
    """A script of one's own (``Runner.from_cfg``, no tools) gets the checkpoint check from
    the default runtime; ``checkpoint_match=None`` restores mmengine's partial loading."""
    from mmengine.registry import DefaultScope

    from capdistill.engine.setup import build_runner
    from capdistill.registry import MODELS
    from capdistill.utils.checkpoint import CheckpointError
    path = write_tiny_config(tmp_path / 'cfg.py', tiny_root)
    other = Config.fromfile(path).model
    other.head.depth = 2  # a deeper head than the config's
    with DefaultScope.overwrite_default_scope('capdistill'):
        state = MODELS.build(other).state_dict()
    key = 'head.blocks.0.norm1.weight'
    state[key] = torch.full_like(state[key], 3.0)  # a value no fresh model starts with
    ckpt = tmp_path / 'deeper.pth'
    torch.save(dict(state_dict=state, meta=dict(epoch=1)), ckpt)

    cfg = Config.fromfile(path)
    cfg.merge_from_dict(dict(load_from=str(ckpt), work_dir=str(tmp_path / 'a')))
    with pytest.raises(CheckpointError, match=r'unexpected \(e\.g\. head\.blocks\.1\.'):
        Runner.from_cfg(cfg).load_or_resume()

    cfg = Config.fromfile(path)
    cfg.merge_from_dict({'load_from': str(ckpt), 'work_dir': str(tmp_path / 'b'),
                         'default_hooks.checkpoint_match': None})
    runner = build_runner(cfg)
    runner.load_or_resume()  # loads what fits, as mmengine does
    assert runner.model.state_dict()[key].equal(state[key])
