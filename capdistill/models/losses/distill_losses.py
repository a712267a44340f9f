"""Distillation losses between teacher and student outputs."""
import torch.nn.functional as F
from torch import nn

from capdistill.registry import LOSSES
from .caption_losses import masked_mean, upcast


@LOSSES.register_module()
class WordKLLoss(nn.Module):
    """Word-level KD: ``tau^2 * KL(p_T^tau || p_S^tau)`` per caption token, averaged
    over real tokens (Hinton et al., 2015, applied per decoding step).

    Inputs: ``student`` and ``teacher`` logits ``(B, L, V)`` over one vocabulary,
    ``mask`` ``(B, L)`` True on caption tokens.
    """

    def __init__(self, tau=1.0, loss_weight=1.0):
        super().__init__()
        self.tau = tau
        self.loss_weight = loss_weight

    def forward(self, student, teacher, mask):
        log_s = F.log_softmax(upcast(student) / self.tau, dim=-1)
        log_t = F.log_softmax(upcast(teacher) / self.tau, dim=-1)
        per_token = (log_t.exp() * (log_t - log_s)).sum(-1)
        return self.loss_weight * self.tau ** 2 * masked_mean(per_token, mask)
