"""Hooks that keep long runs reproducible and stop them loudly when they go wrong."""
import math
import random

import numpy as np
import torch
from mmengine.hooks import Hook

from capdistill.registry import HOOKS


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or Inf."""


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Re-seed python, numpy and torch at the start of every training epoch.

    The seed is ``base + epoch`` (``base`` from ``randomness.seed`` when not given),
    so a run resumed from an epoch checkpoint replays the same dropout masks and
    shuffles as an uninterrupted one: mmengine's checkpoints do not hold RNG states.
    With ``randomness.diff_rank_seed=True`` each process adds its rank, as mmengine's
    own seeding does (otherwise every process draws the same dropout masks).
    """
    priority = 'VERY_HIGH'

    def __init__(self, seed=None):
        self.seed = seed

    def before_train_epoch(self, runner):
        base = self.seed if self.seed is not None else (runner.seed or 0)
        seed = base + runner.epoch
        if (runner.cfg.get('randomness') or {}).get('diff_rank_seed'):
            seed += runner.rank
        seed %= 2 ** 32
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stop the run when any loss term is NaN or Inf, naming the step, the term and
    the batch's video ids."""
    priority = 'HIGH'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        for name, value in (outputs or {}).items():
            value = float(value.detach().mean()) if torch.is_tensor(value) else float(value)
            if not math.isfinite(value):
                samples = (data_batch or {}).get('data_samples') or {}
                ids = list(samples.get('video_id', []))
                shown = ', '.join(map(str, ids[:8])) + (' ...' if len(ids) > 8 else '')
                raise NonFiniteLossError(
                    f'loss term {name!r} is {value} at iteration {runner.iter + 1} (epoch '
                    f'{runner.epoch + 1}), batch videos: {shown or "unknown"}. Check these '
                    'videos\' features, lower the learning rate, or resume from the last '
                    'checkpoint.')
