"""Check at each epoch end that the frozen teacher did not change."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from capdistill.registry import HOOKS


@HOOKS.register_module()
class TeacherFrozenCheckHook(Hook):
    """Calls ``model.check_teacher()`` after every training epoch (and, with
    ``interval``, every ``interval`` iterations); raises if the teacher changed."""

    def __init__(self, interval=0):
        self.interval = interval

    def _check(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if hasattr(model, 'check_teacher'):
            model.check_teacher()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.interval and self.every_n_train_iters(runner, self.interval):
            self._check(runner)

    def after_train_epoch(self, runner):
        self._check(runner)
