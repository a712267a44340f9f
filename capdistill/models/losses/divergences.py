"""Token-level divergences between a teacher's and a student's next-word distributions.

Every loss here compares, at each caption position, the teacher distribution
``p = softmax(z_T / tau)`` with the student distribution ``q = softmax(z_S / tau)``
(``tau`` the temperature, ``z`` logits over one shared vocabulary) and reduces the
per-token values ``d_{b,i}`` over the real tokens:

* ``reduction='mean'`` (default): ``sum_{b,i} m_{b,i} d_{b,i} / sum_{b,i} m_{b,i}``;
* ``'sum'``: ``sum_{b,i} m_{b,i} d_{b,i}``;
* ``'batchmean'``: the sum divided by the number of captions ``B``;
* ``'none'``: the per-token values ``(B, L)``, zero on padding.

``m`` is the padding mask (True on caption tokens; ``None``: every position counts).
The result is multiplied by ``tau ** 2`` (Hinton et al., 2015: keeps the gradient
scale independent of the temperature; 1 at ``tau=1``, the setting of GKD and DistiLLM)
and by ``loss_weight``. Inputs: ``student`` and ``teacher`` logits ``(B, L, V)``,
``mask`` ``(B, L)``; the same names the distillation wiring feeds by default
(``s_logits``, ``t_logits``, ``mask``).

Log-space throughout: a mixture ``a p + (1 - a) q`` is ``logsumexp`` of the shifted
log-probabilities, so the losses stay finite where one distribution underflows.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from capdistill.registry import LOSSES
from .caption_losses import upcast

__all__ = ['TokenDivergence', 'ForwardKLDivergence', 'ReverseKLDivergence',
           'GeneralizedJSDivergence', 'SkewKLDivergence', 'SkewReverseKLDivergence',
           'TotalVariationDistance']

REDUCTIONS = ('mean', 'sum', 'batchmean', 'none')


def _kl(log_a, log_b):
    """``KL(a || b) = sum_v a_v (log a_v - log b_v)`` per token; ``0 log 0 = 0``."""
    a = log_a.exp()
    # masked_fill, not where: a where() would still back-propagate 0 * inf = nan
    diff = (log_a - log_b).masked_fill(a == 0, 0.0)
    return (a * diff).sum(-1)


def _log_mix(log_a, log_b, weight_a):
    """``log(w a + (1 - w) b)`` for ``0 < w < 1``, elementwise in log space."""
    return torch.logaddexp(log_a + math.log(weight_a), log_b + math.log1p(-weight_a))


def _check_unit(name, value, cls, closed=True):
    ok = 0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0
    if not ok:
        interval = '[0, 1]' if closed else '[0, 1)'
        raise ValueError(f'{cls}: {name} must lie in {interval}, got {value!r}.')


class TokenDivergence(nn.Module):
    """Base class: temperature, padding mask and reduction; subclasses give
    :meth:`divergence` on log-probabilities ``(..., V)``.

    Args:
        tau (float): softmax temperature applied to both logits (> 0).
        reduction (str): 'mean', 'sum', 'batchmean' or 'none' (see the module doc).
        loss_weight (float): multiplies the loss.
    """

    def __init__(self, tau=1.0, reduction='mean', loss_weight=1.0):
        super().__init__()
        name = type(self).__name__
        if not tau > 0:
            raise ValueError(f'{name}: tau must be > 0, got {tau!r}.')
        if reduction not in REDUCTIONS:
            raise ValueError(f'{name}: reduction must be one of {REDUCTIONS}, '
                             f'got {reduction!r}.')
        self.tau, self.reduction, self.loss_weight = tau, reduction, loss_weight

    def divergence(self, log_p, log_q):
        """Per-token divergence of teacher ``log_p`` and student ``log_q``."""
        raise NotImplementedError

    def forward(self, student, teacher, mask=None):
        if student.shape != teacher.shape:
            raise ValueError(f'{type(self).__name__}: student logits {tuple(student.shape)} '
                             f'and teacher logits {tuple(teacher.shape)} differ; both must be '
                             '(B, L, V) over one vocabulary.')
        log_q = F.log_softmax(upcast(student) / self.tau, dim=-1)
        log_p = F.log_softmax(upcast(teacher).to(log_q.dtype) / self.tau, dim=-1)
        per_token = self.divergence(log_p, log_q)
        if mask is None:
            mask = torch.ones(per_token.shape, dtype=torch.bool, device=per_token.device)
        m = mask.to(device=per_token.device, dtype=per_token.dtype)
        per_token = per_token * m
        if self.reduction == 'mean':
            out = per_token.sum() / m.sum().clamp(min=1e-8)
        elif self.reduction == 'sum':
            out = per_token.sum()
        elif self.reduction == 'batchmean':
            out = per_token.sum() / max(per_token.shape[0], 1)
        else:
            out = per_token
        return self.loss_weight * self.tau ** 2 * out


@LOSSES.register_module()
class ForwardKLDivergence(TokenDivergence):
    """Forward KL, mean-seeking: ``d = KL(p || q) = sum_v p_v (log p_v - log q_v)``.

    Source: Hinton et al., "Distilling the knowledge in a neural network" (2015),
    per decoding step as in word-level KD (Kim & Rush, EMNLP 2016). With the default
    reduction it equals :class:`WordKLLoss`.
    """

    def divergence(self, log_p, log_q):
        return _kl(log_p, log_q)


@LOSSES.register_module()
class ReverseKLDivergence(TokenDivergence):
    """Reverse KL, mode-seeking: ``d = KL(q || p) = sum_v q_v (log q_v - log p_v)``.

    Source: Gu et al., "MiniLLM: Knowledge distillation of large language models"
    (ICLR 2024), here as the token-level term (no policy gradient over sequences).
    """

    def divergence(self, log_p, log_q):
        return _kl(log_q, log_p)


@LOSSES.register_module()
class GeneralizedJSDivergence(TokenDivergence):
    """Generalised Jensen-Shannon divergence of GKD (Agarwal et al., "On-policy
    distillation of language models: learning from self-generated mistakes", ICLR 2024):

    ``d = beta KL(p || m) + (1 - beta) KL(q || m)``, ``m = beta p + (1 - beta) q``

    with ``p`` the teacher and ``q`` the student. ``beta = 0.5`` is the usual JSD.
    JSD(beta) itself vanishes at both ends; ``JSD(beta) / beta -> KL(p || q)`` as
    ``beta -> 0`` and ``JSD(beta) / (1 - beta) -> KL(q || p)`` as ``beta -> 1``, so,
    as the paper describes and TRL's ``generalized_jsd_loss`` implements, ``beta=0``
    is the forward KL and ``beta=1`` the reverse KL exactly.

    Args:
        beta (float): in [0, 1]; the teacher's weight in the mixture.
    """

    def __init__(self, beta=0.5, **kwargs):
        super().__init__(**kwargs)
        _check_unit('beta', beta, type(self).__name__)
        self.beta = float(beta)

    def divergence(self, log_p, log_q):
        beta = self.beta
        if beta == 0.0:
            return _kl(log_p, log_q)
        if beta == 1.0:
            return _kl(log_q, log_p)
        log_m = _log_mix(log_p, log_q, beta)
        return beta * _kl(log_p, log_m) + (1.0 - beta) * _kl(log_q, log_m)


@LOSSES.register_module()
class SkewKLDivergence(TokenDivergence):
    """Skew KL of DistiLLM (Ko et al., "DistiLLM: Towards streamlined distillation for
    large language models", ICML 2024):

    ``d = KL(p || alpha p + (1 - alpha) q)``

    (teacher ``p``, student ``q``). ``alpha = 0`` is the forward KL; larger ``alpha``
    bounds the loss (``<= -log alpha``) and smooths its gradient. DistiLLM uses 0.1.

    Args:
        alpha (float): in [0, 1); the teacher's share of the skewed student.
    """

    def __init__(self, alpha=0.1, **kwargs):
        super().__init__(**kwargs)
        _check_unit('alpha', alpha, type(self).__name__, closed=False)
        self.alpha = float(alpha)

    def divergence(self, log_p, log_q):
        if self.alpha == 0.0:
            return _kl(log_p, log_q)
        return _kl(log_p, _log_mix(log_p, log_q, self.alpha))


@LOSSES.register_module()
class SkewReverseKLDivergence(SkewKLDivergence):
    """Skew reverse KL of DistiLLM (Ko et al., ICML 2024):

    ``d = KL(q || (1 - alpha) p + alpha q)``

    (teacher ``p``, student ``q``): the skew KL with the two roles swapped. ``alpha = 0``
    is the reverse KL.

    Args:
        alpha (float): in [0, 1); the student's share of the skewed teacher.
    """

    def divergence(self, log_p, log_q):
        return super().divergence(log_q, log_p)


@LOSSES.register_module()
class TotalVariationDistance(TokenDivergence):
    """Total variation distance: ``d = 1/2 sum_v |p_v - q_v|`` (in [0, 1]).

    Source: Wen et al., "f-Divergence minimization for sequence-level knowledge
    distillation" (ACL 2023), the TVD variant, applied per token. Symmetric; its
    gradient is ``sign(q - p)`` through the softmax (zero where ``p == q``).
    """

    def divergence(self, log_p, log_q):
        return 0.5 * (log_p.exp() - log_q.exp()).abs().sum(-1)
