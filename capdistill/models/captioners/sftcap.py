"""SFTCap as the reference code trains it: one network, a teacher path and a student path."""
import torch
import torch.nn.functional as F

from capdistill.registry import BACKBONES, MODELS, STUDENTS, TEACHERS
from .captioner import Captioner


def concept_loss(feats, mask, concepts, embedding, pad_id=0, weight=None):
    """Bag-of-concepts cross-entropy of pooled features against concept token ids.

    ``feats`` ``(B, N, E)`` are max-pooled over valid rows (``mask`` ``(B, N)``) and
    scored against every word by the (tied) word embedding ``(V, E)``; the target is
    uniform over the video's concept tokens ``concepts`` ``(B, K)`` (``pad_id`` =
    empty slot). Videos without concepts are left out; no concept at all gives 0.
    """
    valid = concepts != pad_id
    has = valid.any(1)
    if not has.any():
        return feats.sum() * 0.0
    pooled = feats.masked_fill(~mask[..., None], float('-inf')).amax(1).nan_to_num(0.0)
    logp = F.log_softmax(F.linear(pooled, embedding).float(), dim=-1)
    picked = logp.gather(1, concepts) * valid
    per_video = -picked.sum(1) / valid.sum(1).clamp(min=1)
    w = has.float() if weight is None else has.float() * weight.float()
    return (per_video * w).sum() / w.sum().clamp(min=1e-8)


@MODELS.register_module()
@TEACHERS.register_module()
@STUDENTS.register_module()
class SFTCap(Captioner):
    """Shared-weight teacher/student training of the SFTCap reference code.

    ``visual_encoder`` -> [``teacher_encoder`` (teacher path only)] -> ``encoder``
    (HAM, shared) -> ``head`` (shared). Training loss::

        t * L_T + (1 - t) * L_S + lam_o * L_obj + lam_a * L_act

    ``L_T``/``L_S``: caption loss of the teacher/student path. ``L_obj``/``L_act``
    (only when the batch carries ``obj_tokens``/``act_tokens``): for each path, the
    HAM object features (frames) / action features (action queries) are max-pooled
    and must predict the teacher caption's nouns / verbs through the tied word
    embedding (see :func:`concept_loss`); both paths' terms are averaged with the
    same ``t``. Prediction, decoding and :meth:`student_state_dict` use the student
    path; the teacher-only weights (``teacher_encoder``) are dropped from the
    deployed model, which loads into a plain :class:`Captioner` with the same
    ``visual_encoder``/``encoder``/``head`` (see :meth:`student_config`).

    Args:
        teacher_encoder (dict): the teacher-only stack over the frame tokens.
        t (float): weight of the teacher path's caption loss.
        lam_o, lam_a (float): weights of the object / action concept losses.
        Others as :class:`Captioner`; ``encoder`` should be a :class:`HAM` for the
        concept losses (other encoders work without them).
    """

    teacher_only = ('teacher_encoder.',)

    def __init__(self, visual_encoder, encoder, head, tokenizer, teacher_encoder,
                 t=0.5, lam_o=0.0, lam_a=0.0, **kwargs):
        super().__init__(visual_encoder, encoder, head, tokenizer, **kwargs)
        self.teacher_encoder = BACKBONES.build(teacher_encoder)
        self.t, self.lam_o, self.lam_a = t, lam_o, lam_a
        self._cfg = dict(visual_encoder=visual_encoder, encoder=encoder, head=head,
                         tokenizer=tokenizer, **kwargs)

    def _features(self, inputs, path):
        feats = inputs[self.feature_key]
        x, mask = self.visual_encoder(feats, inputs[f'{self.feature_key}_mask'])
        if path == 'teacher':
            x, mask = self.teacher_encoder(x, mask)
        elif path != 'student':
            raise ValueError(f"path must be 'teacher' or 'student', got {path!r}")
        if hasattr(self.encoder, 'forward_features'):
            return self.encoder.forward_features(x, mask)
        x, mask = self.encoder(x, mask)
        return dict(tokens=x, mask=mask)

    def encode(self, inputs, path='student'):
        """Visual tokens and mask of one path (the student path by default)."""
        out = self._features(inputs, path)
        return out['tokens'], out['mask']

    def caption_logits(self, inputs, tokens, return_hidden=False, path='student'):
        memory, mask = self.encode(inputs, path)
        return self.head(memory, mask, tokens[:, :-1], return_hidden=return_hidden)

    def loss(self, inputs, data_samples):
        tokens = data_samples['tokens']
        weight = data_samples.get('weight')
        losses = {}
        pad = self.tokenizer.pad_id
        emb = self.head.word_embed.weight
        for path, w in (('teacher', self.t), ('student', 1.0 - self.t)):
            out = self._features(inputs, path)
            logits = self.head(out['tokens'], out['mask'], tokens[:, :-1])
            losses[f'loss_caption_{path}'] = w * self.caption_loss(logits, tokens[:, 1:], weight)
            for key, lam, feat, fmask in (
                    ('obj', self.lam_o, out.get('objects'), out.get('frame_mask')),
                    ('act', self.lam_a, out.get('actions'), None)):
                concepts = data_samples.get(f'{key}_tokens')
                if not lam or concepts is None or feat is None:
                    continue
                if fmask is None:
                    fmask = torch.ones(feat.shape[:2], dtype=torch.bool, device=feat.device)
                losses[f'loss_{key}_{path}'] = w * lam * concept_loss(
                    feat, fmask, concepts.to(feat.device), emb, pad)
        return losses

    def student_state_dict(self):
        """The deployed student's weights: every teacher-only weight dropped."""
        return {k: v for k, v in self.state_dict().items()
                if not k.startswith(self.teacher_only)}

    def student_config(self):
        """A :class:`Captioner` config that loads :meth:`student_state_dict` strictly."""
        return dict(type='Captioner', **self._cfg)
