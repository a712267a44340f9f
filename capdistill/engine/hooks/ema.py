"""EMA of the student only (mmengine's EMAHook, pointed at the algorithm's student)."""
import copy

from mmengine.hooks import EMAHook
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import load_state_dict

from capdistill.registry import HOOKS, MODELS


@HOOKS.register_module()
class StudentEMAHook(EMAHook):
    """mmengine's :class:`EMAHook` over the student of a distillation algorithm.

    The averaged copy holds the student alone (not the teacher, not the connectors),
    so it costs one student of memory. Validation/test run with the averaged weights
    and checkpoints store them under ``student.*`` (the raw weights under
    ``ema_state_dict``), exactly as :class:`EMAHook` does for a whole model. On a plain
    captioner it behaves as :class:`EMAHook`. Arguments as :class:`EMAHook`, e.g.
    ``dict(type='StudentEMAHook', ema_type='ExponentialMovingAverage', momentum=0.001)``.
    """

    def before_run(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self.prefix = 'student.' if hasattr(model, 'student') else ''
        self.src_model = getattr(model, 'student', model)
        self.ema_model = MODELS.build(self.ema_cfg, default_args=dict(model=self.src_model))

    def _swap_ema_state_dict(self, checkpoint):
        model_state = checkpoint['state_dict']
        ema_state = checkpoint['ema_state_dict']
        for k in ema_state:
            if k.startswith('module.'):
                key = self.prefix + k[len('module.'):]
                ema_state[k], model_state[key] = model_state[key], ema_state[k]

    def after_load_checkpoint(self, runner, checkpoint):
        if 'ema_state_dict' in checkpoint and runner._resume:
            self._swap_ema_state_dict(checkpoint)
            self.ema_model.load_state_dict(checkpoint['ema_state_dict'], strict=self.strict_load)
        else:
            n = len(self.prefix)
            state = {k[n:]: v for k, v in checkpoint['state_dict'].items()
                     if k.startswith(self.prefix)}
            load_state_dict(self.ema_model.module, copy.deepcopy(state), strict=self.strict_load)
