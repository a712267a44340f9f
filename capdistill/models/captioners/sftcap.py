"""SFTCap as the reference code trains it: one network, a teacher path and a student path."""
import torch

from capdistill.registry import BACKBONES, LOSSES, MODELS, STUDENTS, TEACHERS
from .captioner import Captioner

#: where each SFTCap loss term takes its targets from (``action_labels`` choices)
ACTION_LABELS = dict(verbs='act_tokens', objects='obj_tokens')
TEACHER_TARGETS = ('teacher_caption', 'sampled')


def _batch_tensor(data_samples, key, device):
    """A per-sample tensor entry as one ``(B, ...)`` tensor (collation may leave a list)."""
    value = data_samples.get(key)
    if isinstance(value, (list, tuple)):
        value = torch.stack([torch.as_tensor(v) for v in value])
    return None if value is None else value.to(device)


@MODELS.register_module()
@TEACHERS.register_module()
@STUDENTS.register_module()
class SFTCap(Captioner):
    """Shared-weight teacher/student training of the SFTCap reference code.

    ``visual_encoder`` -> [``teacher_encoder`` (teacher path only)] -> ``encoder``
    (HAM, shared) -> ``head`` (shared). Training loss::

        t * L_T + (1 - t) * L_S + lam_o * L_obj + lam_a * L_act

    ``L_T``: caption loss of the teacher path on the video's *teacher caption* (the
    reference with the highest mean TF-IDF; dataset option ``teacher_caption=True``),
    as the reference trainer does; ``teacher_targets='sampled'`` trains it on the
    sampled caption instead. ``L_S``: the student path on the sampled caption.
    ``L_obj``/``L_act``: for each path, the HAM object features (valid frames) / action
    features (action queries) are max-pooled and must predict the teacher caption's
    nouns / the labels named by ``action_labels`` through the tied word embedding
    (``concept_loss``, a :class:`ConceptPredictionLoss`); both paths' terms are
    averaged with the same ``t``. A term with a non-zero weight whose labels the batch
    lacks stops the step with one line naming the dataset option to set.

    Prediction, decoding and :meth:`student_state_dict` use the student path; the
    teacher-only weights (``teacher_encoder``) are dropped from the deployed model,
    which loads into a plain :class:`Captioner` (see :meth:`student_config`).

    Args:
        teacher_encoder (dict): the teacher-only stack over the frame tokens.
        t (float): weight of the teacher path's caption loss.
        lam_o, lam_a (float): weights of the object / action concept losses.
        teacher_targets (str): ``'teacher_caption'`` (the reference) or ``'sampled'``
            (both paths on the sampled caption).
        action_labels (str): ``'verbs'`` (the paper and the reference's non-shared
            branch) or ``'objects'`` (the reference's shared-weight branch scores the
            action features against the noun labels).
        concept_loss (dict): the concept term (``LOSSES``).
        Others as :class:`Captioner`; ``encoder`` must be a :class:`HAM` (anything
        with ``forward_features``) when ``lam_o`` or ``lam_a`` is non-zero.
    """

    teacher_only = ('teacher_encoder.',)

    def __init__(self, visual_encoder, encoder, head, tokenizer, teacher_encoder,
                 t=0.5, lam_o=0.0, lam_a=0.0, teacher_targets='teacher_caption',
                 action_labels='verbs',
                 concept_loss=dict(type='ConceptPredictionLoss', pool='max'), **kwargs):
        super().__init__(visual_encoder, encoder, head, tokenizer, **kwargs)
        if teacher_targets not in TEACHER_TARGETS:
            raise ValueError(f'SFTCap: teacher_targets must be one of {TEACHER_TARGETS}, '
                             f'not {teacher_targets!r}.')
        if action_labels not in ACTION_LABELS:
            raise ValueError(f'SFTCap: action_labels must be one of {tuple(ACTION_LABELS)}, '
                             f'not {action_labels!r}.')
        if (lam_o or lam_a) and not hasattr(self.encoder, 'forward_features'):
            raise ValueError(f'SFTCap: lam_o/lam_a need an encoder with object and action '
                             f'features (HAM); {type(self.encoder).__name__} has none. '
                             'Set lam_o=lam_a=0 or use encoder=dict(type="HAM", ...).')
        self.teacher_encoder = BACKBONES.build(teacher_encoder)
        self.t, self.lam_o, self.lam_a = t, lam_o, lam_a
        self.teacher_targets, self.action_labels = teacher_targets, action_labels
        concept_loss = dict(concept_loss)
        concept_loss.setdefault('pad_id', self.tokenizer.pad_id)
        self.concept_loss = LOSSES.build(concept_loss)
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

    def _required(self, data_samples, key, why, option, device):
        value = _batch_tensor(data_samples, key, device)
        if value is None:
            raise KeyError(f'SFTCap: {why} needs {key!r} in the batch, which has none; set '
                           f'{option} in the training dataset config.')
        return value

    def loss(self, inputs, data_samples):
        tokens = data_samples['tokens']
        device = tokens.device
        weight = data_samples.get('weight')
        targets = dict(student=(tokens, weight), teacher=(tokens, weight))
        if self.t and self.teacher_targets == 'teacher_caption':
            # the teacher caption is its video's best reference: grade 1, no weight
            targets['teacher'] = (self._required(
                data_samples, 'teacher_tokens', "teacher_targets='teacher_caption'",
                "train_dataloader.dataset.teacher_caption=True (or model.teacher_targets="
                "'sampled')", device), None)
        concept_terms = []
        for name, lam, key in (('obj', self.lam_o, 'obj_tokens'),
                               ('act', self.lam_a, ACTION_LABELS[self.action_labels])):
            if lam:
                labels = self._required(
                    data_samples, key, f'lam_{name[0]}={lam}',
                    'train_dataloader.dataset.concepts=dict(max_objects=3, max_actions=3) '
                    f'(or model.lam_{name[0]}=0)', device)
                concept_terms.append((name, lam, labels))
        losses = {}
        emb = self.head.word_embed.weight
        for path, w in (('teacher', self.t), ('student', 1.0 - self.t)):
            out = self._features(inputs, path)
            caption, cap_weight = targets[path]
            logits = self.head(out['tokens'], out['mask'], caption[:, :-1])
            losses[f'loss_caption_{path}'] = w * self.caption_loss(
                logits, caption[:, 1:], cap_weight)
            for name, lam, labels in concept_terms:
                feats, mask = ((out['objects'], out['frame_mask']) if name == 'obj'
                               else (out['actions'], None))
                losses[f'loss_{name}_{path}'] = w * lam * self.concept_loss(
                    feats, labels, emb, mask=mask)
        return losses

    def student_state_dict(self):
        """The deployed student's weights: every teacher-only weight dropped."""
        return {k: v for k, v in self.state_dict().items()
                if not k.startswith(self.teacher_only)}

    def student_config(self):
        """A :class:`Captioner` config that loads :meth:`student_state_dict` strictly."""
        return dict(type='Captioner', **self._cfg)
