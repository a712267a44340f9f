"""Averaging a loss over a DDP group the way one process would average the whole batch."""
import torch
import torch.distributed as dist


def _world_size():
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def global_mean(total, count):
    """``total / count``, with the count taken over every rank while training under DDP.

    DDP averages gradients over ranks, so a loss that is a per-rank mean weights every
    rank equally: with captions of different lengths, the tokens of a rank holding short
    captions would count more than those of a rank holding long ones, and the gradient
    would differ from that of one process on the whole batch. So, while gradients are
    recorded in a process group of ``W > 1`` ranks, ``count`` is summed over the ranks
    (one ``all_reduce`` of a scalar) and the rank returns ``W * total / count_all``; DDP's
    average of those is ``sum_r total_r / count_all``, the single-process mean. Every rank
    must then call this the same number of times per step, as every loss of a training
    step does. Elsewhere (one process, evaluation, ``no_grad``) it is ``total / count``.

    The value a rank logs is therefore its own tokens' share scaled by ``W``; the mean of
    the logged values over ranks is the global mean.
    """
    world = _world_size()
    if world > 1 and torch.is_grad_enabled() and total.requires_grad:
        count_all = count.detach().clone()
        dist.all_reduce(count_all)
        return total * world / count_all.clamp(min=1e-8)
    return total / count.clamp(min=1e-8)
