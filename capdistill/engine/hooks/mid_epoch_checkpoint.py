"""Checkpoints inside long epochs, which ``--resume`` continues where they stopped."""
import glob
import os
import os.path as osp

from mmengine.dist import all_gather_object, is_main_process
from mmengine.hooks import Hook

from capdistill.registry import HOOKS
from capdistill.utils.files import atomic_open
from ..config_check import ConfigError
from ..loops import MID_EPOCH_KEY, ResumableEpochTrainLoop, mid_epoch_record, rng_state


#: a mid-epoch checkpoint's file name (global iteration count)
FILENAME = 'midepoch_iter_{}.pth'


@HOOKS.register_module()
class MidEpochCheckpointHook(Hook):
    """Save ``midepoch_iter_<N>.pth`` every ``interval`` training iterations inside an epoch.

    The checkpoint holds what an epoch checkpoint holds plus where the epoch stopped and
    every process's random state; ``--resume`` continues it with
    :class:`~capdistill.engine.loops.ResumableEpochTrainLoop` (the default schedule's
    loop) to the weights of an uninterrupted run. Only the newest one is kept, and it
    is removed once an epoch checkpoint follows it. ``interval=0`` (the default runtime's
    setting) saves none; e.g. ``--cfg-options default_hooks.mid_epoch_checkpoint.interval=500``.
    """

    priority = 'LOWEST'  # after CheckpointHook: an epoch's checkpoint replaces ours

    def __init__(self, interval=0):
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 0:
            raise ConfigError('MidEpochCheckpointHook: interval must be an integer >= 0 '
                              f'(iterations between checkpoints; 0: none), not {interval!r}.')
        self.interval = interval

    def before_train(self, runner):
        if self.interval and not isinstance(runner.train_loop, ResumableEpochTrainLoop):
            raise ConfigError(
                f'default_hooks.mid_epoch_checkpoint saves inside epochs, which '
                f'{type(runner.train_loop).__name__} cannot resume: set '
                "train_cfg.type='ResumableEpochTrainLoop' (the default schedule's) or "
                'default_hooks.mid_epoch_checkpoint.interval=0.')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        iters = len(runner.train_dataloader)
        if not self.interval or (runner.iter + 1) % self.interval or batch_idx + 1 == iters:
            return  # the epoch's last iteration: the epoch checkpoint's turn
        states = all_gather_object(rng_state())
        runner.message_hub.update_info(
            MID_EPOCH_KEY, mid_epoch_record(runner.iter + 1, runner.epoch, iters, states))
        name = FILENAME.format(runner.iter + 1)
        runner.save_checkpoint(runner.work_dir, name, save_optimizer=True,
                               save_param_scheduler=True, by_epoch=False)
        if is_main_process():
            with atomic_open(osp.join(runner.work_dir, 'last_checkpoint'), 'w') as f:
                f.write(osp.join(runner.work_dir, name))
            self._remove_older(runner.work_dir, keep=name)

    def after_train_epoch(self, runner):
        latest = osp.join(runner.work_dir, 'last_checkpoint')
        if is_main_process() and osp.isfile(latest):
            with open(latest) as f:
                kept = osp.basename(f.read().strip())
            # an epoch checkpoint came after them (a resumed run's too)
            self._remove_older(runner.work_dir, keep=kept)

    @staticmethod
    def _remove_older(work_dir, keep):
        for path in glob.glob(osp.join(work_dir, FILENAME.format('*'))):
            if osp.basename(path) != keep:
                os.remove(path)
