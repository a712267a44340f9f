"""Feature-level distillation losses on recorded tensors."""
import torch
import torch.nn.functional as F
from torch import nn

from capdistill.registry import LOSSES
from ..pooling import masked_pool
from .caption_losses import upcast


def _row_mask(x, mask):
    """Row mask of shape ``x.shape[:-1]`` (all True when ``mask`` is None)."""
    if mask is None:
        return torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)
    mask = mask.to(x.device).bool()
    if mask.shape != x.shape[:-1]:
        raise ValueError(f'mask {tuple(mask.shape)} does not match the features '
                         f'{tuple(x.shape)} (expected {tuple(x.shape[:-1])}).')
    return mask


def _check_same(student, teacher, name):
    if student.shape != teacher.shape:
        raise ValueError(f'{name}: student {tuple(student.shape)} and teacher '
                         f'{tuple(teacher.shape)} differ; add a connector (e.g. '
                         "LinearConnector) on the student side: inputs=dict(student='c(s)').")


def pool(x, mask=None, how='mean'):
    """``(B, N, D)`` -> ``(B, D)`` over valid rows (``(B, D)`` passes through)."""
    return x if x.dim() == 2 else masked_pool(x, mask, how)


@LOSSES.register_module()
class FeatureMSELoss(nn.Module):
    """Feature regression (FitNets hints; Romero et al., ICLR 2015).

    ``L = 1 / (|M| D) * sum_{r in M} ||s_r - t_r||^2`` over the valid rows ``M``
    (all rows without a mask) of ``(..., D)`` features. Student and teacher must have
    one shape: put a connector on the student side where widths differ.
    ``normalize=True`` L2-normalises both first (then ``L`` is in ``[0, 4/D]``).
    """

    def __init__(self, loss_weight=1.0, normalize=False):
        super().__init__()
        self.loss_weight = loss_weight
        self.normalize = normalize

    def forward(self, student, teacher, mask=None):
        _check_same(student, teacher, type(self).__name__)
        s, t = upcast(student), upcast(teacher).detach()
        if self.normalize:
            s, t = F.normalize(s, dim=-1), F.normalize(t, dim=-1)
        rows = _row_mask(s, mask).to(s.dtype)
        per_row = (s - t).square().mean(-1)
        return self.loss_weight * (per_row * rows).sum() / rows.sum().clamp(min=1)


@LOSSES.register_module()
class FeatureCosineLoss(nn.Module):
    """Cosine feature matching: ``L = mean_{r in M} (1 - cos(s_r, t_r))``.

    Matches feature directions and ignores their scale (as in the cosine "hint"
    losses of e.g. CRD baselines / Tian et al., ICLR 2020, and CLIP-KD).
    """

    def __init__(self, loss_weight=1.0, eps=1e-8):
        super().__init__()
        self.loss_weight = loss_weight
        self.eps = eps

    def forward(self, student, teacher, mask=None):
        _check_same(student, teacher, type(self).__name__)
        s, t = upcast(student), upcast(teacher).detach()
        rows = _row_mask(s, mask).to(s.dtype)
        per_row = 1.0 - F.cosine_similarity(s, t, dim=-1, eps=self.eps)
        return self.loss_weight * (per_row * rows).sum() / rows.sum().clamp(min=1)


@LOSSES.register_module()
class RelationalLoss(nn.Module):
    """Match the pairwise relations between the videos of a batch.

    Features ``(B, D)`` (or ``(B, N, D)``, mean-pooled over valid rows first); the
    widths of student and teacher may differ, no connector is needed.

    * ``mode='similarity'`` (similarity-preserving KD; Tung & Mori, ICCV 2019):
      ``G = normalize_rows(F F^T)``, ``L = ||G_s - G_t||_F^2 / B^2``.
    * ``mode='distance'`` (RKD distance; Park et al., CVPR 2019):
      ``psi_ij = ||f_i - f_j|| / mu`` with ``mu`` the mean over pairs ``i != j``,
      ``L = mean_{i != j} huber(psi^s_ij - psi^t_ij)`` (smooth-L1, beta 1).
    """

    def __init__(self, mode='similarity', loss_weight=1.0):
        super().__init__()
        if mode not in ('similarity', 'distance'):
            raise ValueError("RelationalLoss mode must be 'similarity' or 'distance', "
                             f'not {mode!r}.')
        self.mode = mode
        self.loss_weight = loss_weight

    @staticmethod
    def _distances(f):
        d = torch.cdist(f, f)
        b = f.shape[0]
        off = ~torch.eye(b, dtype=torch.bool, device=f.device)
        mu = d[off].mean().clamp(min=1e-8)
        return d / mu, off

    def forward(self, student, teacher, mask=None, teacher_mask=None):
        s = pool(upcast(student), mask)
        t = pool(upcast(teacher).detach(), teacher_mask if teacher_mask is not None else
                 (mask if mask is not None and teacher.shape[:-1] == mask.shape else None))
        b = s.shape[0]
        if self.mode == 'similarity':
            gs = F.normalize(s @ s.t(), dim=1)
            gt = F.normalize(t @ t.t(), dim=1)
            loss = (gs - gt).square().sum() / b ** 2
        else:
            if b < 2:
                return s.sum() * 0.0
            ds, off = self._distances(s)
            with torch.no_grad():
                dt, _ = self._distances(t)
            loss = F.smooth_l1_loss(ds[off], dt[off])
        return self.loss_weight * loss


@LOSSES.register_module()
class ObjectDistillLoss(FeatureMSELoss):
    """SFTCap object-level distillation: the student's object features (one per frame,
    e.g. a HAM's ``encoder.objects``) regress the teacher's frame-aligned object
    features, over valid frames:
    ``L = 1 / (|M| D) sum_{b, f in M} ||W o^s_{b,f} - o^t_{b,f}||^2``
    (``W``: a connector). Source: Dual-hierarchical KD for video captioning
    (SFTCap/CapDistill, Pattern Recognition 171, 2026), object level.
    """


@LOSSES.register_module()
class ActionDistillLoss(nn.Module):
    """SFTCap action-level distillation on clip-level action features.

    The student's action features ``(B, K_s, D)`` (e.g. a HAM's ``encoder.actions``)
    and the teacher's ``(B, K_t, D)`` (its actions or temporal tokens; ``K_s`` and
    ``K_t`` may differ) are pooled over their slots (``pool='max'`` or ``'mean'``,
    ``teacher_mask`` marks valid teacher rows) and matched:
    ``L = mean_b ||norm(pool(A_s)_b) - norm(pool(A_t)_b)||^2 / D`` with ``norm`` L2-normalisation
    (``normalize=False``: raw features). Source: Dual-hierarchical KD for video
    captioning (Pattern Recognition 171, 2026), action level; pooling makes it usable
    when the slots of the two models do not correspond one to one.
    """

    def __init__(self, loss_weight=1.0, pool='max', normalize=True):
        super().__init__()
        self.loss_weight, self.how, self.normalize = loss_weight, pool, normalize

    def forward(self, student, teacher, teacher_mask=None):
        s = pool(upcast(student), None, self.how)
        t = pool(upcast(teacher).detach(), teacher_mask, self.how)
        _check_same(s, t, type(self).__name__)
        if self.normalize:
            s, t = F.normalize(s, dim=-1), F.normalize(t, dim=-1)
        return self.loss_weight * (s - t).square().mean()
