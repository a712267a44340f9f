"""Losses on the ground-truth caption."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from capdistill.registry import LOSSES
from capdistill.utils.distributed import global_mean


def upcast(x):
    """Half-precision logits are summed in float32; float32/64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def masked_mean(per_token, mask, weight=None):
    """Mean over real tokens; ``weight`` ``(B,)`` scales each caption's tokens.

    Under DDP the mean is over the tokens of all ranks (:func:`global_mean`).
    """
    mask = mask.to(per_token.dtype)
    if weight is not None:
        mask = mask * weight.to(per_token.dtype)[:, None]
    # under DDP the denominator counts every rank's tokens (see global_mean)
    return global_mean((per_token * mask).sum(), mask.sum())


def label_smoothed_nll(logits, targets, smoothing=0.0):
    """Per-token ``KL(q || p)`` to the label-smoothed target ``q`` (``(B, L)``).

    ``q = 1 - eps`` on the target word and ``eps / (V - 1)`` on every other word
    (Szegedy et al., CVPR 2016); ``eps = 0`` is the plain cross-entropy
    ``-log p(target)``. The one implementation of label smoothing in capdistill.
    """
    logp = F.log_softmax(upcast(logits), dim=-1)
    logp_t = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if not smoothing:
        return -logp_t
    v = logits.shape[-1]
    eps = smoothing
    on, off = 1.0 - eps, eps / (v - 1)
    # sum_v q log q is a constant per token; sum_v q log p splits into target/rest.
    ent = on * math.log(on) + eps * math.log(off)
    return ent - (on * logp_t + off * (logp.sum(-1) - logp_t))


@LOSSES.register_module()
class LabelSmoothingLoss(nn.Module):
    """KL divergence to a label-smoothed target, as the reference code trains with.

    ``q = 1 - eps`` on the target word and ``eps / (V - 1)`` on every other word;
    loss ``= sum_v q_v (log q_v - log p_v)`` averaged over non-padding tokens
    (Szegedy et al., CVPR 2016; the SFTCap reference code's caption loss), see
    :func:`label_smoothed_nll`.
    """

    def __init__(self, smoothing=0.1, ignore_index=0, loss_weight=1.0):
        super().__init__()
        self.smoothing = smoothing
        self.ignore_index = ignore_index
        self.loss_weight = loss_weight

    def forward(self, logits, targets, weight=None):
        per_token = label_smoothed_nll(logits, targets, self.smoothing)
        return self.loss_weight * masked_mean(per_token, targets != self.ignore_index, weight)


@LOSSES.register_module()
class CrossEntropyCaptionLoss(nn.Module):
    """Token-level cross-entropy over non-padding tokens (maximum likelihood):
    ``L = -sum_{b,i} w_b m_{b,i} log p(y_{b,i}) / sum_{b,i} w_b m_{b,i}`` with ``m`` the
    non-padding mask and ``w`` the optional per-caption weight (1 without one).
    """

    def __init__(self, ignore_index=0, loss_weight=1.0):
        super().__init__()
        self.ignore_index = ignore_index
        self.loss_weight = loss_weight

    def forward(self, logits, targets, weight=None):
        per_token = F.cross_entropy(upcast(logits).transpose(1, 2), targets, reduction='none')
        return self.loss_weight * masked_mean(per_token, targets != self.ignore_index, weight)
