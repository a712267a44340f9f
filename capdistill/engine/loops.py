"""Training loop that resumes inside an epoch.

mmengine's epoch loop resumes at epoch boundaries only: a run stopped after 1,500 of an
epoch's 2,000 iterations (an MSR-VTT epoch is hours on CPU) would train those 1,500 again.
With :class:`~capdistill.engine.hooks.MidEpochCheckpointHook` saving every N iterations,
:class:`ResumableEpochTrainLoop` continues such a checkpoint where it stopped: the
epoch's batches already trained are drawn in the same order (the sampler's order is
fixed by the seed and epoch) and passed over without being loaded, and the random state
of that iteration is restored, so the run ends with the weights an uninterrupted one has.
"""
import itertools
import random

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop
from torch.utils.data import DataLoader, IterableDataset

from capdistill.registry import LOOPS

#: message-hub entry a mid-epoch checkpoint carries (see :func:`mid_epoch_record`)
MID_EPOCH_KEY = 'capdistill_mid_epoch'


class MidEpochResumeError(RuntimeError):
    """A mid-epoch checkpoint that this run cannot continue exactly."""


def rng_state():
    """This process's python, numpy and torch (and CUDA) random states."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def mid_epoch_record(iteration, epoch, iters_per_epoch, states):
    """What a mid-epoch checkpoint keeps to be continued: where it stopped and every
    rank's random state (``states``, one per rank)."""
    return dict(iter=iteration, epoch=epoch, iters_per_epoch=iters_per_epoch,
                world_size=len(states), rng=states)


def batches_done(record, epoch, iteration, iters_per_epoch, world_size):
    """How many of epoch ``epoch``'s batches a resumed run skips: 0 unless ``record``
    (the checkpoint's :func:`mid_epoch_record`) is where the run resumes; a record this
    run cannot continue exactly raises :class:`MidEpochResumeError`."""
    if not record or record['iter'] != iteration or record['epoch'] != epoch:
        return 0  # an epoch checkpoint (or a later one than the record)
    where = f'The checkpoint saved at iteration {iteration} (epoch {epoch + 1})'
    if record['iters_per_epoch'] != iters_per_epoch:
        raise MidEpochResumeError(
            f'{where} came from a run of {record["iters_per_epoch"]} iterations per epoch; '
            f'this one has {iters_per_epoch} (the training set, batch size or process '
            'count changed). Resume it with the same data and settings, or resume from '
            "the last epoch checkpoint (--resume work_dirs/RUN/epoch_N.pth).")
    if record['world_size'] != world_size:
        raise MidEpochResumeError(
            f'{where} was saved by {record["world_size"]} processes; this run has '
            f'{world_size}. Each process skips its own share of the epoch, so resume it '
            'with the same number of processes, or from the last epoch checkpoint.')
    done = iteration - epoch * iters_per_epoch
    if not 0 < done < iters_per_epoch:
        raise MidEpochResumeError(f'{where} is not inside epoch {epoch + 1} '
                                  f'({iters_per_epoch} iterations per epoch).')
    return done


class _WithoutFirst:
    """A batch sampler less its first ``skip`` batches: their indices are drawn (the
    order of the rest is unchanged) and passed over."""

    def __init__(self, batch_sampler, skip):
        self.batch_sampler, self.skip = batch_sampler, skip

    def __iter__(self):
        return itertools.islice(iter(self.batch_sampler), self.skip, None)

    def __len__(self):
        return max(len(self.batch_sampler) - self.skip, 0)


def batches_after(loader, done):
    """The batches of ``loader`` after its first ``done``, in the same order. For a
    map-style data set the first ``done`` are never loaded: a one-epoch copy of the
    loader reads the rest (an MSR-VTT epoch skipped this way costs milliseconds instead of
    reading its features); any other loader is read and the first ``done`` dropped."""
    if not done:
        return loader
    if (type(loader) is not DataLoader or loader.batch_sampler is None
            or isinstance(loader.dataset, IterableDataset)):
        return itertools.islice(loader, done, None)
    workers = loader.num_workers
    return DataLoader(
        loader.dataset, batch_sampler=_WithoutFirst(loader.batch_sampler, done),
        num_workers=workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
        timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context if workers else None,
        generator=loader.generator, prefetch_factor=loader.prefetch_factor if workers else None,
        pin_memory_device=loader.pin_memory_device, in_order=loader.in_order)


@LOOPS.register_module()
class ResumableEpochTrainLoop(EpochBasedTrainLoop):
    """mmengine's ``EpochBasedTrainLoop`` (same arguments, same run when nothing is
    resumed mid-epoch), continuing a mid-epoch checkpoint where it stopped."""

    def run_epoch(self):
        runner = self.runner
        runner.call_hook('before_train_epoch')  # re-seeds the epoch (EpochSeedHook)
        runner.model.train()
        record = runner.message_hub.get_info(MID_EPOCH_KEY)
        done = batches_done(record, self._epoch, self._iter, len(self.dataloader),
                            runner.world_size)
        if done:
            print_log(f'Resuming inside epoch {self._epoch + 1}: its first {done} batches '
                      'were trained before the checkpoint and are skipped.', logger='current')
        # the skipped batches are drawn in the same order as the stopped run, not loaded
        for idx, data_batch in enumerate(batches_after(self.dataloader, done), start=done):
            if done and idx == done:
                set_rng_state(record['rng'][runner.rank])
            self.run_iter(idx, data_batch)
        runner.call_hook('after_train_epoch')
        self._epoch += 1


__all__ = ['ResumableEpochTrainLoop', 'MidEpochResumeError', 'MID_EPOCH_KEY', 'rng_state',
           'set_rng_state', 'mid_epoch_record', 'batches_done', 'batches_after']
