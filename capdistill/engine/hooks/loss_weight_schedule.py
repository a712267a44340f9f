"""Loss-weight schedules: change any loss weight (or the SFTCap teacher weight ``t``)
during training."""
import math

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from capdistill.registry import HOOKS

POLICIES = ('constant', 'linear', 'cosine', 'step')


def schedule_value(policy, progress, start, end, milestones=()):
    """The weight at ``progress`` in [0, 1] of the schedule's span.

    ``constant``: ``start``; ``linear``: ``start + (end - start) p``;
    ``cosine``: ``end + (start - end) (1 + cos(pi p)) / 2``; ``step``: ``start`` until
    the first milestone (fractions of the span), then ``end``.
    """
    p = min(max(progress, 0.0), 1.0)
    if policy == 'constant':
        return start
    if policy == 'linear':
        return start + (end - start) * p
    if policy == 'cosine':
        return end + (start - end) * (1 + math.cos(math.pi * p)) / 2
    if policy == 'step':
        return end if any(p >= m for m in milestones) else start
    raise ValueError(f'Unknown schedule policy {policy!r}; use one of {POLICIES}.')


def resolve_target(model, target):
    """``(object, attribute)`` a target name points to.

    Shortcuts: ``'student'`` (a DistillAlgorithm's ``student_loss_weight``),
    ``'distill.<name>'`` or a bare loss name (``distill_losses[<name>].loss_weight``),
    ``'t'`` (the SFTCap teacher weight, ``model.student.t`` or ``model.t``). Anything
    else is a dotted attribute path on the model, e.g. ``'student.lam_o'``.
    """
    losses = getattr(model, 'distill_losses', {})
    if target == 'student' and hasattr(model, 'student_loss_weight'):
        return model, 'student_loss_weight'
    name = target[len('distill.'):] if target.startswith('distill.') else target
    if name in losses:
        return losses[name], 'loss_weight'
    if target == 't':
        owner = getattr(model, 'student', model)
        if hasattr(owner, 't'):
            return owner, 't'
    *path, attr = target.split('.')
    obj = model
    for part in path:
        if not hasattr(obj, part):
            break
        obj = getattr(obj, part)
    else:
        if hasattr(obj, attr):
            return obj, attr
    raise ValueError(f'Loss-weight schedule: no target {target!r} on {type(model).__name__}. '
                     f"Use 'student', 't', a distill loss name ({sorted(losses)}) or a "
                     'dotted attribute path.')


@HOOKS.register_module()
class LossWeightScheduleHook(Hook):
    """Set loss weights from schedules before every training iteration.

    Example::

        custom_hooks = [dict(type='LossWeightScheduleHook', schedules=dict(
            loss_word=dict(policy='linear', start=0.0, end=1.0, end_frac=0.5),
            student=dict(policy='cosine', start=1.0, end=0.2),
            t=dict(policy='step', start=0.5, end=0.0, milestones=[0.8])))]

    Each schedule: ``policy`` (constant, linear, cosine, step), ``start``, ``end``
    (default: ``start``), and the span ``begin_frac``/``end_frac`` as fractions of the
    whole training (default 0 and 1; before/after it the start/end value holds).
    ``milestones`` for ``step``. Progress counts iterations. The current values go to
    the message hub as ``train/weight.<target>`` (the logger shows them).
    """

    priority = 'NORMAL'

    def __init__(self, schedules):
        self.schedules = {}
        for target, cfg in schedules.items():
            cfg = dict(cfg)
            policy = cfg.pop('policy', 'constant')
            if policy not in POLICIES:
                raise ValueError(f'Schedule for {target!r}: unknown policy {policy!r}; use '
                                 f'one of {POLICIES}.')
            start = cfg.pop('start')
            sched = dict(policy=policy, start=start, end=cfg.pop('end', start),
                         begin_frac=cfg.pop('begin_frac', 0.0), end_frac=cfg.pop('end_frac', 1.0),
                         milestones=tuple(cfg.pop('milestones', ())))
            if cfg:
                raise ValueError(f'Schedule for {target!r}: unknown keys {sorted(cfg)}.')
            self.schedules[target] = sched

    def before_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self._targets = {t: resolve_target(model, t) for t in self.schedules}

    def value_at(self, target, iteration, max_iters):
        s = self.schedules[target]
        frac = iteration / max(max_iters, 1)
        span = max(s['end_frac'] - s['begin_frac'], 1e-12)
        return schedule_value(s['policy'], (frac - s['begin_frac']) / span, s['start'],
                              s['end'], s['milestones'])

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        for target, (obj, attr) in self._targets.items():
            value = self.value_at(target, runner.iter, runner.max_iters)
            setattr(obj, attr, value)
            runner.message_hub.update_scalar(f'train/weight.{target}', value)
