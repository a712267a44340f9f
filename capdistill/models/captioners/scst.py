"""Self-critical sequence training (SCST) of any captioner, with an optional KD term.

Rennie et al., "Self-critical sequence training for image captioning" (CVPR 2017):
the captioner samples captions ``w^s`` (no gradient through the sampling), decodes a
greedy caption ``w^g`` as the baseline, and is trained with the policy gradient of the
CIDEr-D reward

    L_scst = - sum_{n,t} (r(w^s_n) - b_n) m_{n,t} log p(w^s_{n,t} | w^s_{n,<t}, v_n)
             / sum_{n,t} m_{n,t}

with ``b_n = r(w^g)`` of the same video (or, ``baseline='mean'``, the mean reward of
the video's other samples, Luo 2020, "A better variant of self-critical sequence
training") and ``m`` the mask of the sampled words and their EOS. The reward is the
project's fast CIDEr-D (:class:`capdistill.evaluation.fast_scorers.FastCider`) with
document frequencies of the training split's references, computed once and cached.

With ``kd=dict(...)`` a frozen teacher also scores the sampled captions
teacher-forced, and a token-level divergence of
:mod:`capdistill.models.losses.divergences` is added: ``L = L_scst + w * D``. The
teacher is loaded, frozen and checksummed as a distillation run's
(:mod:`capdistill.models.distillers.teachers`; ``check_teacher`` for
``TeacherFrozenCheckHook``).
"""
import json
import os.path as osp
from collections import Counter
from itertools import chain

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.logging import print_log
from mmengine.model import BaseModel

from capdistill.datasets.annotations import DataError, file_hash, load_captions, load_split
from capdistill.datasets.tokenizers import split_words
from capdistill.evaluation.fast_scorers import FastCider, ngram_counts
from capdistill.registry import LOSSES, MODELS
from capdistill.utils.checkpoint import (CheckpointError, load_full_checkpoint,
                                         load_matching_state, state_dict_of,
                                         strip_student_prefix)
from capdistill.utils.files import atomic_open
from ..distillers.teachers import HoldsTeachers, Teachers
from .sampling import CaptionSampler

__all__ = ['CiderDReward', 'SelfCriticalCaptioner', 'load_captioner_weights']

_DF_VERSION = 1


def _normalise(text):
    return ' '.join(split_words(text))


class CiderDReward:
    """CIDEr-D of captions against their video's training references.

    Document frequencies and the corpus size come from the references of every video
    of ``split_file`` (the whole annotation file without one), are computed on first
    use and cached in a json file keyed to the annotation and split files' contents
    (``cache_file``, default ``.capdistill_cache/`` beside the annotation file), so
    later runs and the other DDP ranks read them. Captions and references are
    lower-cased words without punctuation (the tokenizers' ``split_words``).

    Args:
        ann_file (str): caption annotations (any layout :func:`load_captions` reads).
        split_file (str, optional): the training split's video ids.
        cache_file (str, optional): where the document frequencies are cached.
        allow_pickle (bool): accept a .pkl split file.
    """

    def __init__(self, ann_file, split_file=None, cache_file=None, allow_pickle=False):
        captions = load_captions(ann_file)
        ids = load_split(split_file, allow_pickle) if split_file else list(captions)
        absent = [v for v in ids if v not in captions]
        if absent:
            raise DataError(f'SCST references: {len(absent)} video(s) of {split_file} have no '
                            f'captions in {ann_file} (e.g. {absent[0]!r}); use the annotation '
                            'file of that split.')
        self.refs = {v: [_normalise(c) for c in captions[v]] for v in ids}
        self.where = f'{ann_file}' + (f' (split {split_file})' if split_file else '')
        key = file_hash(ann_file) + (f'.{file_hash(split_file)}' if split_file else '')
        if cache_file is None:
            folder = osp.join(osp.dirname(osp.abspath(ann_file)), '.capdistill_cache')
            cache_file = osp.join(folder, f'cider_df.v{_DF_VERSION}.{key}.json')
        self.cache_file = cache_file
        self._key = key
        self.scorer = FastCider()
        self.doc_freq = None
        self.num_docs = len(self.refs)

    def document_frequencies(self):
        """n-gram -> number of training videos whose references contain it (cached)."""
        if self.doc_freq is None:
            self.doc_freq = self._read_cache()
            if self.doc_freq is None:
                self.doc_freq = Counter(chain.from_iterable(
                    set(chain.from_iterable(ngram_counts(r.split()) for r in refs))
                    for refs in self.refs.values()))
                self._write_cache()
        return self.doc_freq

    def _read_cache(self):
        if not osp.isfile(self.cache_file):
            return None
        try:
            with open(self.cache_file) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return None  # damaged: recompute and overwrite
        if data.get('key') != self._key or data.get('num_docs') != self.num_docs:
            return None
        return Counter({tuple(k.split(' ')): v for k, v in data['doc_freq'].items()})

    def _write_cache(self):
        try:
            # a temporary file then an atomic rename: DDP ranks may write at once
            with atomic_open(self.cache_file, 'w') as f:
                json.dump(dict(key=self._key, num_docs=self.num_docs,
                               doc_freq={' '.join(k): v for k, v in self.doc_freq.items()}), f)
        except OSError as exc:
            print_log(f'SCST: could not cache document frequencies in {self.cache_file} '
                      f'({exc}); they are recomputed by every run.', logger='current',
                      level=30)

    def __call__(self, video_ids, captions):
        """CIDEr-D ``(N,)`` (1.0 = 100 CIDEr) of ``captions[i]`` for ``video_ids[i]``."""
        missing = [v for v in video_ids if v not in self.refs]
        if missing:
            raise KeyError(f'SCST: video {missing[0]!r} of the batch has no references in '
                           f'{self.where}; the references must cover the training split.')
        doc_freq = self.document_frequencies()
        ids = list(range(len(captions)))
        gts = {i: self.refs[v] for i, v in zip(ids, video_ids)}
        res = {i: [_normalise(c)] for i, c in zip(ids, captions)}
        _, scores = self.scorer.compute_score(gts, res, ids, doc_freq=doc_freq,
                                              num_docs=self.num_docs)
        return np.asarray(scores, dtype=np.float64)


def load_captioner_weights(captioner, path):
    """Load a captioner's weights from a run's checkpoint.

    Accepts an mmengine ``.pth`` of the captioner itself, of a distillation run
    (``student.*`` keys; connectors and teacher are left out), of an SCST run
    (``captioner.*``), or a student export (``.safetensors``).
    """
    if not osp.isfile(path):
        raise CheckpointError(f'student_ckpt not found: {path}. Train or distil the student '
                              'first (tools/train.py) or fix model.student_ckpt.')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        state = strip_student_prefix(state_dict_of(load_full_checkpoint(path)))
    own = captioner.state_dict()
    # a deployed export drops teacher-only weights (e.g. SFTCap's teacher path)
    only = getattr(captioner, 'teacher_only', ())
    state = dict(state, **{k: v for k, v in own.items()
                           if k not in state and k.startswith(tuple(only))})
    load_matching_state(captioner, state, f'student_ckpt {path}')


@MODELS.register_module()
class SelfCriticalCaptioner(HoldsTeachers, BaseModel):
    """Fine-tune any captioner by self-critical sequence training on CIDEr-D.

    Loss keys: ``loss_scst`` (the policy gradient above), ``loss_kd`` (with ``kd``),
    ``loss_caption`` (with ``caption_loss_weight > 0``: the captioner's own loss on
    the ground-truth caption, mixed in). Logged, not optimised: ``reward_sample``,
    ``reward_greedy`` (mean CIDEr-D of the samples and of the greedy captions) and
    ``advantage_pos`` (fraction of samples better than their baseline).

    Sampling uses :class:`CaptionSampler` in the model's current mode (dropout on in
    training); the greedy baseline is decoded in eval mode. The sampled words are
    re-scored teacher-forced with gradients, over the same vocabulary the sampler
    may pick from (PAD/BOS banned) and at temperature 1. The sampling generator is
    seeded from ``(sampler.seed, step, rank)`` with ``step`` a counter kept in the
    state dict, so a resumed run samples as the uninterrupted one.

    Args:
        captioner (dict): any captioner config (``MODELS``; e.g. ``Captioner``,
            ``SFTCap``) with ``encode``/``caption_logits``/``generate``/``predict``.
        references (dict): ``dict(ann_file, split_file, cache_file=None)`` of the
            training split (see :class:`CiderDReward`).
        sampler (dict): :class:`CaptionSampler` settings (``temperature``,
            ``max_len``, ``num_samples``, ``seed``).
        baseline (str): ``'greedy'`` (Rennie et al.) or ``'mean'`` (the mean reward of
            the video's other samples; needs ``num_samples >= 2``).
        student_ckpt (str, optional): initial weights, e.g. a distilled run's
            checkpoint (see :func:`load_captioner_weights`).
        kd (dict, optional): ``dict(teacher=cfg, teacher_ckpt=path, loss=dict(type=
            'ForwardKLDivergence', ...), weight=w, allow_random_teacher=False)``.
        caption_loss_weight (float): weight of the ground-truth caption loss.
    """

    def __init__(self, captioner, references, sampler=None, baseline='greedy',
                 student_ckpt=None, kd=None, caption_loss_weight=0.0,
                 data_preprocessor=dict(type='CaptionDataPreprocessor'), init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self._captioner_cfg = dict(captioner)
        self.captioner = MODELS.build(captioner)
        for name in ('encode', 'caption_logits', 'generate', 'predict', 'tokenizer'):
            if not hasattr(self.captioner, name):
                raise TypeError(f'SelfCriticalCaptioner: {type(self.captioner).__name__} has '
                                f'no {name!r}; wrap a captioner (e.g. Captioner, SFTCap).')
        if student_ckpt is not None:
            load_captioner_weights(self.captioner, student_ckpt)
        self.sampler = CaptionSampler(**(sampler or {}))
        self.sampler.check(self.captioner)
        if baseline not in ('greedy', 'mean'):
            raise ValueError(f"SCST baseline must be 'greedy' or 'mean', got {baseline!r}.")
        if baseline == 'mean' and self.sampler.num_samples < 2:
            raise ValueError("SCST baseline='mean' needs sampler.num_samples >= 2.")
        self.baseline = baseline
        if not isinstance(references, dict) or 'ann_file' not in references:
            raise ValueError('SCST needs references=dict(ann_file=..., split_file=...) of '
                             'the training split (for the CIDEr-D reward).')
        self.reward = CiderDReward(**references)
        self.caption_loss_weight = caption_loss_weight
        self.register_buffer('sample_step', torch.zeros((), dtype=torch.long))
        self.kd_weight, self.kd_loss = 0.0, None
        teachers = None
        if kd is not None:
            kd = dict(kd)
            unknown = set(kd) - {'teacher', 'teacher_ckpt', 'loss', 'weight',
                                 'allow_random_teacher'}
            if unknown or 'teacher' not in kd:
                raise ValueError(f'SCST kd: needs teacher=..., takes teacher_ckpt, loss, '
                                 f'weight, allow_random_teacher; got {sorted(kd)}.')
            # loaded, frozen and checksummed as a distillation run's teacher
            teachers = Teachers.from_config(
                kd['teacher'], kd.get('teacher_ckpt'),
                allow_random_teacher=kd.get('allow_random_teacher', False), key='model.kd')
            teachers.bind(self.captioner)
            self.kd_loss = LOSSES.build(kd.get('loss', dict(type='ForwardKLDivergence')))
            self.kd_weight = float(kd.get('weight', 1.0))
        self.hold_teachers(teachers)

    # -- the deployed model is the wrapped captioner (tools/export_student.py) ----------
    tokenizer = property(lambda self: self.captioner.tokenizer)
    feature_key = property(lambda self: self.captioner.feature_key)
    max_len = property(lambda self: self.captioner.max_len)
    decode_cfg = property(lambda self: self.captioner.decode_cfg)
    visual_encoder = property(lambda self: self.captioner.visual_encoder)

    def student_state_dict(self):
        """The wrapped captioner's deployable weights (no ``captioner.`` prefix)."""
        if hasattr(self.captioner, 'student_state_dict'):
            return self.captioner.student_state_dict()
        return self.captioner.state_dict()

    def student_config(self):
        """The config that rebuilds the deployed captioner."""
        if hasattr(self.captioner, 'student_config'):
            return self.captioner.student_config()
        return dict(self._captioner_cfg)

    # -- the frozen teacher stays frozen and follows .to() (see distillers.teachers) -----
    teacher = property(lambda self: self.teachers.primary.model if self.teachers else None)

    # -- forward -----------------------------------------------------------------------
    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.captioner.predict(inputs, data_samples)
        return self.captioner(inputs, data_samples, mode='tensor')

    def _texts(self, ids):
        return [self.captioner.tokenizer.decode(row.tolist()) for row in ids]

    @torch.no_grad()
    def _greedy(self, inputs):
        was_training = self.captioner.training
        self.captioner.eval()
        try:
            return self.captioner.generate(inputs, strategy='greedy', beam_size=1)
        finally:
            self.captioner.train(was_training)

    def rewards(self, video_ids, ids):
        """CIDEr-D of generated ids ``(N, T)`` against their videos' references."""
        return self.reward(video_ids, self._texts(ids))

    def loss(self, inputs, data_samples):
        video_ids = list(data_samples['video_id'])
        n = self.sampler.num_samples
        generator = self.sampler.generator(int(self.sample_step), get_rank())
        self.sample_step += 1
        sampled = self.sampler(self.captioner, inputs, generator=generator)
        sample_vids = [v for v in video_ids for _ in range(n)]
        r_sample = self.rewards(sample_vids, sampled['ids'])
        logs = {}
        if self.baseline == 'greedy':
            r_greedy = self.rewards(video_ids, self._greedy(inputs))
            base = np.repeat(r_greedy, n)
            logs['reward_greedy'] = float(r_greedy.mean())
        else:
            per_video = r_sample.reshape(-1, n)
            base = ((per_video.sum(1, keepdims=True) - per_video) / (n - 1)).reshape(-1)
        device = sampled['tokens'].device
        advantage = torch.as_tensor(r_sample - base, dtype=torch.float32, device=device)
        raw = self.captioner.caption_logits(sampled['inputs'], sampled['tokens'])
        logits = raw
        tok = self.captioner.tokenizer
        if self.sampler.ban_special:
            banned = sorted({tok.pad_id, tok.bos_id} - {tok.eos_id})
            logits = raw.index_fill(-1, torch.tensor(banned, device=device), float('-inf'))
        logp = torch.log_softmax(logits.float(), dim=-1)
        logp = logp.gather(-1, sampled['tokens'][:, 1:, None]).squeeze(-1)
        # after EOS the target is PAD (banned, -inf): keep those positions out of the sum
        picked = torch.where(sampled['mask'], logp, torch.zeros_like(logp))
        losses = dict(loss_scst=-(advantage[:, None] * picked).sum()
                      / sampled['mask'].sum().clamp(min=1))
        if self.kd_loss is not None:
            # the teacher scores the student's own tokens; the divergence compares the
            # two full distributions (no ban) at every sampled position
            t_logits = self.teachers.primary.caption_logits(sampled['inputs'],
                                                            sampled['tokens'])
            losses['loss_kd'] = self.kd_weight * self.kd_loss(raw, t_logits, sampled['mask'])
        if self.caption_loss_weight:
            own = self.captioner.loss(inputs, data_samples)
            losses['loss_caption'] = self.caption_loss_weight * sum(own.values())
        stats = dict(reward_sample=float(r_sample.mean()),
                     advantage_pos=float((r_sample > base).mean()), **logs)
        losses.update({k: torch.tensor(v, device=device) for k, v in stats.items()})
        return losses
