"""A hook that kills its own process at a chosen iteration (SIGKILL: no cleanup runs)."""
import os
import signal

from mmengine.hooks import Hook

from capdistill.registry import HOOKS


@HOOKS.register_module()
class KillAtIterHook(Hook):

    def __init__(self, iteration):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)
