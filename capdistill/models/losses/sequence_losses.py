"""Sequence-level, concept and caption-quality losses."""
import torch
import torch.nn.functional as F
from torch import nn

from capdistill.registry import LOSSES
from ..pooling import masked_pool
from .caption_losses import label_smoothed_nll, masked_mean, upcast


@LOSSES.register_module()
class SequenceKDLoss(nn.Module):
    """Sequence-level KD (Kim & Rush, EMNLP 2016): the student is trained on the
    teacher's own beam-search caption ``y^T`` of each video:
    ``L = -1/|M| sum_{b,i in M} log p_S(y^T_{b,i} | y^T_{b,<i}, video_b)``
    (``smoothing > 0``: the label-smoothed KL of :class:`LabelSmoothingLoss` instead).

    The captions are decoded once per video by :class:`DistillAlgorithm` and cached
    (in memory, and in ``seq_kd=dict(cache_file=...)`` across runs); feed it
    ``student='seq_logits', targets='seq_targets'`` (the defaults of its config
    mapping are not used, it has no ``teacher`` argument).
    """

    def __init__(self, smoothing=0.0, ignore_index=0, loss_weight=1.0):
        super().__init__()
        self.smoothing, self.ignore_index = smoothing, ignore_index
        self.loss_weight = loss_weight

    def forward(self, student, targets):
        per_token = label_smoothed_nll(student, targets, self.smoothing)
        return self.loss_weight * masked_mean(per_token, targets != self.ignore_index)


@LOSSES.register_module()
class QualityWeightedCaptionLoss(nn.Module):
    """Caption loss weighted by each caption's quality grade (SFTCap, Pattern
    Recognition 2026: captions weighted by a grade such as mean TF-IDF).

    ``L = sum_{b,i} g_b^gamma l_{b,i} m_{b,i} / sum_{b,i} g_b^gamma m_{b,i}`` with
    ``l`` the per-token label-smoothed KL (``smoothing > 0``) or cross-entropy, ``m``
    the caption mask and ``g`` the grade ``data_samples['weight']`` (dataset option
    ``grade='tfidf'``). ``gamma`` sharpens (>1) or flattens (<1) the grading; ``gamma=0``
    is the plain loss (and needs no grades). Usable as a student's ``caption_loss`` (called with
    ``logits, targets, weight``) or as a distill loss fed ``s_logits, targets, weight``.
    """

    #: without the dataset's grades every weight is 1 (checked by DataRequirementsHook)
    required_batch_keys = {'grade': 'quality-weighted caption loss'}

    def __init__(self, smoothing=0.1, gamma=1.0, ignore_index=0, loss_weight=1.0):
        super().__init__()
        self.smoothing, self.gamma = smoothing, gamma
        self.ignore_index, self.loss_weight = ignore_index, loss_weight

    def forward(self, logits, targets, weight=None):
        if not self.gamma:  # the plain loss: grades are not needed
            weight = None
        elif weight is None:
            raise ValueError("QualityWeightedCaptionLoss: the batch carries no caption grades "
                             "('weight'); set grade='tfidf' (or 'consensus') in the training "
                             'dataset config, or use LabelSmoothingLoss.')
        per_token = label_smoothed_nll(logits, targets, self.smoothing)
        w = None if weight is None else torch.as_tensor(
            weight, dtype=per_token.dtype, device=per_token.device).clamp(min=0) ** self.gamma
        return self.loss_weight * masked_mean(per_token, targets != self.ignore_index, w)


@LOSSES.register_module()
class ConceptPredictionLoss(nn.Module):
    """Concept (noun / verb) prediction from pooled features (SFTCap hierarchy).

    Features ``(B, N, E)`` are pooled over valid rows (``pool='max'`` or ``'mean'``),
    scored against every word by a word-embedding matrix ``(V, E)`` (e.g. the tied
    ``s_word_embed``), and the target is uniform over the video's concept ids
    ``(B, K)`` (``obj_tokens``/``act_tokens`` of the dataset's ``concepts=``, 0 = empty):
    ``L = sum_b w_b (-1/|C_b| sum_{c in C_b} log softmax(E f_b)_c) / sum_b w_b``,
    ``w_b = 1`` where the video has a concept, else 0 (and times ``weight`` if given).
    Source: SFTCap (Pattern Recognition 171, 2026): objects/actions predict the nouns /
    verbs of the teacher caption.
    """

    def __init__(self, pool='max', pad_id=0, loss_weight=1.0):
        super().__init__()
        self.how, self.pad_id, self.loss_weight = pool, pad_id, loss_weight

    def forward(self, feats, concepts, embedding, mask=None, weight=None):
        concepts = concepts.to(feats.device).long()
        valid = concepts != self.pad_id
        has = valid.any(1).to(upcast(feats).dtype)
        pooled = masked_pool(upcast(feats), mask, self.how)
        logp = F.log_softmax(pooled @ upcast(embedding).t(), dim=-1)
        picked = (logp.gather(1, concepts) * valid).sum(1)
        per_video = -picked / valid.sum(1).clamp(min=1)
        w = has if weight is None else has * torch.as_tensor(weight, dtype=has.dtype,
                                                             device=has.device)
        return self.loss_weight * (per_video * w).sum() / w.sum().clamp(min=1e-8)
