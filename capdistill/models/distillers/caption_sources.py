"""The captions a distillation loss can be computed on: one home for each source.

* ground truth: the batch's ``tokens`` (the dataset's references), used as they are;
* teacher captions (:class:`TeacherCaptions`): the teacher's beam-search caption of
  each video, decoded once and kept (sequence-level KD, Kim & Rush 2016);
* student samples (:class:`OnPolicySource`): captions the student samples itself,
  for on-policy distillation (generalised KD, Agarwal et al., ICLR 2024).

Every source gives teacher-forcing rows ``[BOS] words [EOS] PAD...`` in the student's
vocabulary, so a caller re-scores them with ``caption_logits(inputs, tokens)``. With
several teachers (:mod:`.teachers`), the teacher here is the first one listed.
"""
import json
import os

import torch
from mmengine.dist import get_rank
from torch import nn

from capdistill.models.captioners.sampling import CaptionSampler
from capdistill.utils.files import atomic_open
from capdistill.utils.requirements import ModelConfigError
from .teacher_cache import check_signature

__all__ = ['TeacherCaptions', 'OnPolicySource', 'ONPOLICY_SIDE', 'OFF_POLICY',
           'build_onpolicy', 'pad_rows']

# tensors of the on-policy batch the losses can read (see OnPolicySource)
ONPOLICY_SIDE = {'op_s_logits', 'op_t_logits', 'op_mask', 'op_targets', 'op_sampled'}
OFF_POLICY = ('ground_truth', 'teacher')


def pad_rows(rows, pad_id, device):
    """Lists of ids -> LongTensor ``(N, max length)`` right-padded with ``pad_id``."""
    length = max(map(len, rows))
    out = torch.full((len(rows), length), pad_id, dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.as_tensor(row, dtype=torch.long, device=device)
    return out


class TeacherCaptions:
    """The teacher's beam-search caption of each video, decoded once.

    Captions are kept in memory by video id and, with ``cache_file``, in a json file
    (written atomically) that later runs read instead of decoding again. The file records
    the teacher that decoded them (:meth:`bind`): another teacher stops the run.

    Args:
        beam_size (int): the teacher's beam width.
        cache_file (str, optional): json file of ``video id -> caption``.
    """

    def __init__(self, beam_size=3, cache_file=None):
        self.beam_size = int(beam_size)
        self.cache_file = cache_file
        self.captions, self.signature = {}, None
        if cache_file and os.path.isfile(cache_file):
            with open(cache_file) as f:
                data = json.load(f)
            # {"teacher": ..., "captions": {...}}; a file of captions alone predates the record
            if isinstance(data, dict) and isinstance(data.get('captions'), dict):
                self.signature, self.captions = data.get('teacher'), data['captions']
            else:
                self.captions = data

    def bind(self, signature):
        """Tie the captions to the teacher that decodes them (``signature``, see
        :meth:`.FrozenTeacher.signature`); a file decoded by another teacher stops the run."""
        signature = dict(signature, beam_size=self.beam_size)
        if self.signature is not None:
            check_signature(self.signature, signature, f'Sequence-KD captions {self.cache_file}',
                            'model.seq_kd.cache_file')
        self.signature = signature

    def texts(self, teacher, inputs, video_ids):
        """The captions of ``video_ids`` (rows of ``inputs``), decoding those not kept."""
        vids = [str(v) for v in video_ids]
        first = {}
        for i, v in enumerate(vids):
            if v not in self.captions:
                first.setdefault(v, i)
        if first:
            todo = [first[v] for v in sorted(first)]
            index = torch.tensor(todo, device=_device(inputs))
            sub = {k: v.index_select(0, index) if torch.is_tensor(v) else v
                   for k, v in inputs.items()}
            with torch.no_grad():
                ids = teacher.generate(sub, strategy='beam', beam_size=self.beam_size)
            for i, row in zip(todo, ids.tolist()):
                self.captions[vids[i]] = teacher.tokenizer.decode(row)
            self._save()
        return [self.captions[v] for v in vids]

    def tokens(self, teacher, tokenizer, max_len, inputs, video_ids, device):
        """Teacher-forcing rows of the teacher's captions in ``tokenizer``'s ids."""
        rows = [[tokenizer.bos_id] + tokenizer.encode(text)[:max_len] + [tokenizer.eos_id]
                for text in self.texts(teacher, inputs, video_ids)]
        return pad_rows(rows, tokenizer.pad_id, device)

    def _save(self):
        if not self.cache_file:
            return
        with atomic_open(self.cache_file, 'w', encoding='utf-8') as f:
            json.dump(dict(teacher=self.signature, captions=self.captions), f, indent=0,
                      sort_keys=True)


def _device(inputs):
    for value in inputs.values():
        if torch.is_tensor(value):
            return value.device
    return torch.device('cpu')


class OnPolicySource(nn.Module):
    """A batch whose captions are, for a fraction ``lmbda`` of its rows, sampled by
    the student, and for the others the ground truth or the teacher's captions.

    Each step, ``round(lmbda * B)`` rows drawn at random get a caption the student
    samples (:class:`CaptionSampler`: KV-cached, ``no_grad``, in eval mode, at
    ``temperature``, at most ``max_len`` words); the other rows keep the ground-truth
    caption (``off_policy='ground_truth'``, supervised KD) or take the teacher's
    beam-search caption (``'teacher'``, sequence KD; decoded once per video, see
    :class:`TeacherCaptions`). Student and teacher then score every row
    teacher-forced, the student with gradients, the teacher under ``no_grad``:

    * ``op_s_logits``/``op_t_logits``: their logits ``(B, L', V)``;
    * ``op_targets``: the next-word ids ``(B, L')``; ``op_mask``: True on the
      caption's words and its EOS;
    * ``op_sampled``: True on the rows the student sampled ``(B,)``.

    The row choice and the draws come from a CPU generator seeded from
    ``(seed, step, rank)``; ``step`` is a buffer (in the checkpoint), so a resumed run
    samples as the uninterrupted one and DDP ranks sample differently.

    Args:
        lmbda (float): the student-sampled fraction of each batch, in [0, 1].
        temperature (float): sampling temperature (> 0).
        max_len (int, optional): most sampled words (default: the student's max_len).
        seed (int): base seed of the sampling.
        off_policy (str): 'ground_truth' or 'teacher': the captions of the other rows.
    """

    def __init__(self, lmbda=0.5, temperature=1.0, max_len=None, seed=0,
                 off_policy='ground_truth'):
        super().__init__()
        if not 0.0 <= float(lmbda) <= 1.0:
            raise ModelConfigError(f'model.onpolicy.lmbda must lie in [0, 1] (the '
                                   f'student-sampled fraction of a batch), got {lmbda!r}.')
        if off_policy not in OFF_POLICY:
            raise ModelConfigError(f'model.onpolicy.off_policy must be one of {OFF_POLICY}, '
                                   f'got {off_policy!r}.')
        try:
            self.sampler = CaptionSampler(temperature=temperature, max_len=max_len, seed=seed)
        except ValueError as exc:
            raise ModelConfigError(f'model.onpolicy: {exc}') from None
        self.lmbda = float(lmbda)
        self.off_policy = off_policy
        self.register_buffer('step', torch.zeros((), dtype=torch.long))

    def check(self, student, teacher):
        """Refuse at build time samples longer than either captioner's head holds, and
        a teacher whose logits are not over the student's tokens."""
        s_vocab, t_vocab = student.tokenizer.vocab_size, teacher.tokenizer.vocab_size
        if s_vocab != t_vocab:
            raise ModelConfigError(
                f'model.onpolicy: the teacher scores the student\'s sampled tokens, but their '
                f'vocabularies differ ({s_vocab} student tokens, {t_vocab} teacher tokens); '
                'give both the same tokenizer.')
        for name, model in (('student', student), ('teacher', teacher)):
            limit = self.sampler.max_len or student.max_len
            if limit > model.max_len:
                raise ModelConfigError(
                    f'model.onpolicy: sampled captions of up to {limit} words do not fit '
                    f'the {name}\'s max_len={model.max_len} (its head has no positions for '
                    'them); lower model.onpolicy.max_len.')

    @torch.no_grad()
    def sample_rows(self, student, inputs, tokens, generator):
        """Token rows of the batch: student samples on a random ``lmbda`` fraction."""
        n = tokens.shape[0]
        k = int(round(self.lmbda * n))
        order = torch.randperm(n, generator=generator)
        sampled = torch.zeros(n, dtype=torch.bool)
        sampled[order[:k]] = True
        rows = [r[:int((r != student.tokenizer.pad_id).sum())].tolist() for r in tokens]
        if k:
            index = order[:k].sort().values.to(tokens.device)
            sub = {key: v.index_select(0, index) if torch.is_tensor(v) else v
                   for key, v in inputs.items()}
            was_training = student.training
            student.eval()  # sample the policy that is deployed (no dropout)
            try:
                out = self.sampler(student, sub, generator=generator)
            finally:
                student.train(was_training)
            pad = student.tokenizer.pad_id
            for i, row in zip(index.tolist(), out['tokens']):
                rows[i] = row[:int((row != pad).sum())].tolist()
        return pad_rows(rows, student.tokenizer.pad_id, tokens.device), \
            sampled.to(tokens.device)

    def forward(self, student, teacher, inputs, tokens, labeled=None, teacher_tokens=None):
        """The ``op_*`` tensors of a batch (see the class doc).

        ``tokens`` are the ground-truth rows; ``labeled`` ``(B,)`` False on videos
        without captions (their ground-truth rows are left out of ``op_mask``; sampled
        and teacher-caption rows keep them); ``teacher_tokens`` a callable giving the
        teacher-caption rows (``off_policy='teacher'``).
        """
        generator = self.sampler.generator(int(self.step), get_rank())
        self.step += 1
        if self.off_policy == 'teacher':
            tokens = teacher_tokens()
        rows, sampled = self.sample_rows(student, inputs, tokens, generator)
        targets = rows[:, 1:]
        s_logits = student.caption_logits(inputs, rows)
        with torch.no_grad():
            t_logits = teacher.caption_logits(inputs, rows)
        mask = targets != student.tokenizer.pad_id
        if labeled is not None and self.off_policy == 'ground_truth':
            keep = torch.as_tensor(labeled, dtype=torch.bool, device=mask.device) | sampled
            mask = mask & keep[:, None]
        return dict(op_s_logits=s_logits, op_t_logits=t_logits, op_targets=targets,
                    op_mask=mask, op_sampled=sampled)


def build_onpolicy(cfg, used, student, teacher):
    """The :class:`OnPolicySource` of ``model.onpolicy``, or None.

    Losses reading ``op_*`` tensors need it, and it needs such a loss: either alone
    is a config that would not do what it says, refused here.
    """
    reads = sorted(used & ONPOLICY_SIDE)
    if cfg is None:
        if reads:
            raise ModelConfigError(
                f'a distill loss reads {reads} but model.onpolicy is not set; add '
                'model.onpolicy=dict(lmbda=0.5, temperature=1.0, seed=0) (student-sampled '
                'captions) or read s_logits/t_logits instead.')
        return None
    if not reads:
        raise ModelConfigError(
            'model.onpolicy is set but no distill loss reads its tensors; feed a divergence '
            "inputs=dict(student='op_s_logits', teacher='op_t_logits', mask='op_mask'), or "
            'set model.onpolicy=None.')
    import inspect
    known = [p for p in inspect.signature(OnPolicySource).parameters]
    unknown = sorted(set(cfg) - set(known))
    if unknown:
        raise ModelConfigError(f'model.onpolicy: unknown key(s) {unknown}; it takes {known}.')
    source = OnPolicySource(**cfg)
    source.check(student, teacher)
    return source
