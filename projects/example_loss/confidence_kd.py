"""Confidence-weighted word KD: an example distillation loss living outside capdistill/."""
import torch
import torch.nn.functional as F
from torch import nn

from capdistill.registry import LOSSES


@LOSSES.register_module()
class ConfidenceWeightedWordKLLoss(nn.Module):
    """Word-level KD that trusts the teacher only where it is right.

    Per caption token ``i``: ``KL_i = KL(p_T^tau || p_S^tau)`` (as ``WordKLLoss``), weighted
    by the teacher's probability of the ground-truth word, ``c_i = p_T(y_i)^beta`` (at
    temperature 1, no gradient):

        L = tau^2 * sum_i m_i c_i KL_i / sum_i m_i c_i

    with ``m`` the caption mask. ``beta=0`` gives plain word KD. The idea follows
    confidence-aware KD (e.g. Zhou et al., "Rethinking soft labels", ICLR 2021, and
    CAKD-style token weighting): tokens where the teacher is confidently wrong teach
    little.

    Inputs: ``student``/``teacher`` logits ``(B, L, V)``, ``targets`` ``(B, L)``
    (next-word ids), ``mask`` ``(B, L)``.
    """

    def __init__(self, tau=2.0, beta=1.0, loss_weight=1.0):
        super().__init__()
        self.tau, self.beta, self.loss_weight = tau, beta, loss_weight

    def forward(self, student, teacher, targets, mask):
        s = student.float() if student.dtype in (torch.float16, torch.bfloat16) else student
        t = teacher.to(s.dtype).detach()
        log_s = F.log_softmax(s / self.tau, dim=-1)
        log_t = F.log_softmax(t / self.tau, dim=-1)
        kl = (log_t.exp() * (log_t - log_s)).sum(-1)
        conf = F.softmax(t, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        w = conf.pow(self.beta) * mask.to(s.dtype)
        return self.loss_weight * self.tau ** 2 * (kl * w).sum() / w.sum().clamp(min=1e-8)
