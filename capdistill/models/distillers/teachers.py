"""The frozen teachers of a distillation run: loading, freezing, checking, caching.

One home for everything a teacher needs, used by :class:`.DistillAlgorithm` and by
:class:`~capdistill.models.captioners.scst.SelfCriticalCaptioner` alike:

* **loading**: ``TEACHERS.build(cfg)`` then the checkpoint (:func:`load_teacher_weights`:
  a file, a glob, ``work_dirs/RUN/best``; a captioner run, a distillation run's
  ``student.*`` or an SCST run's ``captioner.*``); no checkpoint is an error unless
  random weights are asked for (tests, timing);
* **freezing**: every teacher is kept outside the owner's module tree
  (:class:`HoldsTeachers`: not in its state dict, its optimizer or DDP), in eval mode,
  ``requires_grad=False``, run under ``no_grad``; :meth:`Teachers.apply` lets
  ``.to()``/``.half()`` still move it;
* **checking**: a checksum of its weights, compared by :meth:`Teachers.check`
  (:class:`TeacherChangedError` on any change or unfreezing);
* **caching**: with ``teacher_cache``, the teacher outputs the losses read, per caption,
  in one folder per teacher (:mod:`.teacher_cache`).

Several teachers (``teachers=dict(<name>=dict(model=..., ckpt=..., ...))``) each have
their own checkpoint, feature set and ensemble weight. Their tensors are named
``t_logits.<name>``, ``t_hidden.<name>``, ``t_word_embed.<name>`` and their recorders
use ``source='teacher.<name>'``; ``t_logits.ensemble`` is their weighted mixture
(:func:`mixture_logits`). The single-teacher form ``teacher=..., teacher_ckpt=...``
is one teacher named ``'teacher'`` whose tensors keep their plain names (``t_logits``,
``source='teacher'``; the ``.teacher`` suffixed names work too). The *first* teacher
listed is the primary one: it decodes the sequence-KD captions (``seq_*``), scores the
on-policy rows (``op_t_logits``) and is ``algorithm.teacher``.
"""
import hashlib
import os
import re

import torch
from mmengine.logging import print_log

from capdistill.registry import TEACHERS
from capdistill.utils import (load_full_checkpoint, load_matching_state, resolve_checkpoint,
                              state_dict_of)
from capdistill.utils.requirements import ModelConfigError
from .teacher_cache import TeacherCache, caption_key
from .vocab_map import VocabMap, VocabMapError

__all__ = ['Teachers', 'FrozenTeacher', 'HoldsTeachers', 'TeacherChangedError',
           'TeacherConfigError', 'DistillConfigError', 'load_teacher_weights',
           'mixture_logits', 'ENSEMBLE', 'TEACHER_TENSORS']

#: per-teacher tensors a loss can read (suffixed ``.<name>`` with several teachers)
TEACHER_TENSORS = ('t_logits', 't_hidden', 't_word_embed')
#: the name of the teachers' mixture (``t_logits.ensemble``); no teacher may take it
ENSEMBLE = 'ensemble'
_NAME = re.compile(r'^[A-Za-z_]\w*$')
_ENTRY_KEYS = ('model', 'ckpt', 'feature_key', 'weight')


class TeacherChangedError(RuntimeError):
    """A frozen teacher's weights (or its frozen state) changed during training."""


class DistillConfigError(ModelConfigError):
    """A distillation config that would not train as written, found when it is built."""


class TeacherConfigError(DistillConfigError):
    """A teacher config that cannot be used as written, found when it is built."""


def load_teacher_weights(model, path, what='Teacher checkpoint'):
    """Load a teacher's weights strictly from a run's checkpoint.

    A captioner run's ``.pth``, a distillation run's (its ``student.*``: a distilled
    student can teach), an SCST run's (``captioner.*``) or an exported student
    (``.safetensors``). Missing or extra weights are an error.
    """
    if str(path).endswith('.safetensors'):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        state = state_dict_of(load_full_checkpoint(path))
    for prefix in ('student.', 'captioner.'):
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            break
    load_matching_state(model, state, f'{what} {path}')


def _fingerprint(tokenizer):
    """A tokenizer's vocabulary fingerprint, or None for one that cannot tell it."""
    fingerprint = getattr(tokenizer, 'fingerprint', None)
    return fingerprint() if callable(fingerprint) else None


def mixture_logits(logits, weights, temperature=1.0):
    """Logits of the weighted mixture of several token distributions.

    ``logits``: tensors ``(..., V)`` over the same vocabulary; ``weights``: one per
    tensor (>= 0, normalised to sum 1). Returns ``T * log(sum_i w_i softmax(z_i / T))``
    with ``T = temperature``: a loss that applies temperature ``tau`` to them
    (``softmax(x / tau)``) sees exactly the mixture of the members' distributions at
    temperature ``T`` when ``tau == T``; with ``T = 1`` they are the mixture's
    log-probabilities and a loss's ``tau`` sharpens or flattens the mixture itself
    (``softmax(log p / tau)`` is proportional to ``p ** (1 / tau)``).
    """
    w = torch.as_tensor([float(x) for x in weights], dtype=torch.float32)
    logw = torch.log(w / w.sum()).to(logits[0].device)
    stacked = torch.stack([torch.log_softmax(z.float() / temperature, dim=-1) + lw
                           for z, lw in zip(logits, logw)])
    return (temperature * torch.logsumexp(stacked, dim=0)).to(logits[0].dtype)


class FrozenTeacher:
    """One frozen teacher: its captioner, checkpoint, feature key, weight and cache.

    Not an ``nn.Module`` on purpose: nothing that walks an owner's modules (state dict,
    optimizer, DDP, ``train()``) reaches it.
    """

    def __init__(self, name, model, source, weight=1.0, ckpt=None, cache=None):
        self.name, self.model, self.source = name, model, source
        self.weight, self.ckpt, self.cache = float(weight), ckpt, cache
        self.vocab_map = None
        model.eval()
        model.requires_grad_(False)
        self.reset_checksum()

    @property
    def feature_key(self):
        return getattr(self.model, 'feature_key', None)

    def tensor(self, base):
        """The name a loss reads this teacher's ``base`` tensor by."""
        return base if self.source == 'teacher' else f'{base}.{self.name}'

    @property
    def where(self):
        return 'The teacher' if self.source == 'teacher' else f'Teacher {self.name!r}'

    # -- checking ------------------------------------------------------------------
    @torch.no_grad()
    def checksum(self):
        total = torch.zeros((), dtype=torch.float64)
        for i, p in enumerate(self.model.state_dict().values()):
            if p.is_floating_point():
                q = p.detach().double()
                total += (q.sum() + (i % 7 + 1) * q.square().sum()).cpu()
        return float(total)

    def reset_checksum(self):
        self._sum = self.checksum()

    @torch.no_grad()
    def signature(self):
        """What decides this teacher's outputs, for the caches that keep them: a digest
        of its weights' bytes (the same on any device and thread count) and vocabulary."""
        digest = hashlib.sha1()
        for name, value in self.model.state_dict().items():
            digest.update(f'{name}:{value.dtype}:{tuple(value.shape)};'.encode())
            digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
                          .numpy().tobytes())
        return dict(teacher_weights=digest.hexdigest()[:20],
                    teacher_vocabulary=_fingerprint(self.model.tokenizer))

    def check(self):
        """Raise :class:`TeacherChangedError` if the weights or the frozen state changed."""
        if any(p.requires_grad for p in self.model.parameters()) or self.model.training:
            raise TeacherChangedError(
                f'{self.where} was unfrozen (requires_grad or train mode set on it); it must '
                'stay frozen during distillation.')
        now = self.checksum()
        if now != self._sum:
            who = '' if self.source == 'teacher' else f' of teacher {self.name!r}'
            raise TeacherChangedError(
                f'The teacher weights{who} changed during distillation (checksum {now!r}, '
                f'was {self._sum!r}). Something updates the teacher: an optimizer given its '
                'parameters, a hook writing into it, or a shared module with the student.')

    # -- running -------------------------------------------------------------------
    def caption_logits(self, inputs, tokens, return_hidden=False):
        """Teacher-forced logits on student token rows (over the student's tokens for a
        compact student, see :mod:`.vocab_map`)."""
        with torch.no_grad():
            if self.vocab_map is not None:
                return self.vocab_map.caption_logits(self.model, inputs, tokens, return_hidden)
            return self.model.caption_logits(inputs, tokens, return_hidden=return_hidden)

    def word_embed(self):
        weight = self.model.head.word_embed.weight
        return self.vocab_map.word_embed(weight) if self.vocab_map is not None else weight

    def outputs(self, names, run, video_ids, tokens, mask, vocab_size, pad_id):
        """This teacher's tensors ``names`` (base names and recorder names) of a batch,
        read from its cache when every caption is there (now and then checked against
        ``run()``), else computed by ``run()`` (a callable returning them) and written to
        the cache. ``tokens`` are the student's rows (``pad_id`` its PAD), ``vocab_size``
        that of ``t_logits``."""
        cache, keys = self.cache, None
        if cache is not None:
            keys = [caption_key(v, t, pad_id) for v, t in zip(video_ids, tokens.tolist())]
            cached = cache.load(keys, tokens.shape[1] - 1,
                                vocab_size if 't_logits' in names else None, names)
            if cached is not None:
                if cache.due_for_check():
                    cache.verify(keys, cached, run())
                return {k: v.to(tokens.device) for k, v in cached.items()}
        out = run()
        if cache is not None:
            cache.save(keys, mask.sum(1).tolist(), out)
        return out


class HoldsTeachers:
    """Mixin for a module that owns frozen teachers (``self.teachers``, may be None).

    They are held outside the module tree, so not in its state dict, optimizer or DDP;
    ``.to()``/``.half()`` still move them and ``.train()`` leaves them in eval mode.
    """

    def hold_teachers(self, teachers):
        self.__dict__['teachers'] = teachers  # not a submodule, on purpose

    def check_teacher(self):
        """Raise :class:`TeacherChangedError` if a teacher's weights or mode changed."""
        if self.teachers is not None:
            self.teachers.check()

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        if self.teachers is not None:
            self.teachers.apply(fn, *args, **kwargs)
        return self

    def train(self, mode=True):
        super().train(mode)
        if self.teachers is not None:
            self.teachers.eval()
        return self


class Teachers:
    """The named frozen teachers of one model, in config order (the first is primary).

    Build with :meth:`from_config`. Iterating gives the :class:`FrozenTeacher` s.
    """

    def __init__(self, teachers, ensemble_temperature=1.0):
        self._teachers = dict(teachers)
        self.ensemble_temperature = float(ensemble_temperature)
        if self.ensemble_temperature <= 0:
            raise TeacherConfigError('model.teacher_ensemble.temperature must be > 0, got '
                                     f'{ensemble_temperature!r}.')

    # -- building ------------------------------------------------------------------
    @classmethod
    def from_config(cls, teacher=None, teacher_ckpt=None, teachers=None,
                    allow_random_teacher=False, teacher_cache=None, ensemble=None,
                    key='model'):
        """Build from ``teacher=cfg, teacher_ckpt=path`` (one teacher named ``'teacher'``)
        or ``teachers=dict(<name>=dict(model=cfg, ckpt=path, feature_key=None,
        weight=1.0), ...)``; ``key`` is the config prefix errors name."""
        if teachers is not None and teacher is not None:
            raise TeacherConfigError(f'{key}: give either teacher=... (with teacher_ckpt) or '
                                     'teachers=dict(<name>=dict(model=..., ckpt=...)), not both.')
        if teachers is None:
            if teacher is None:
                raise TeacherConfigError(f'{key}: no teacher; set {key}.teacher=<captioner '
                                         f'config> and {key}.teacher_ckpt, or {key}.teachers.')
            entries = {'teacher': dict(model=teacher, ckpt=teacher_ckpt)}
            keys = {'teacher': (f'{key}.teacher_ckpt', 'teacher')}
        else:
            if teacher_ckpt is not None:
                raise TeacherConfigError(f'{key}.teacher_ckpt is set but the teachers come from '
                                         f'{key}.teachers: give each its own ckpt=... there.')
            entries = {k: v for k, v in dict(teachers).items() if v is not None}
            if not entries:
                raise TeacherConfigError(f'{key}.teachers is empty; name at least one teacher.')
            keys = {n: (f'{key}.teachers.{n}.ckpt', f'teacher.{n}') for n in entries}
        # every entry checked (names, keys, checkpoints) before any model is built
        plan = []
        for name, entry in entries.items():
            ckpt_key, source = keys[name]
            entry = cls._entry(name, entry, key)
            path = None
            if entry.get('ckpt') is not None:
                path = resolve_checkpoint(entry['ckpt'], 'Teacher checkpoint', ckpt_key)
            elif not allow_random_teacher:
                field = ckpt_key.rsplit('.', 1)[-1]
                raise TeacherConfigError(
                    f'{ckpt_key} is not set (no {field} given), so the teacher would keep '
                    'random weights: train the teacher first (python tools/train.py <teacher '
                    f'config>) and set {ckpt_key} to its checkpoint (a file, a glob or '
                    f'work_dirs/RUN/best), or set {key}.allow_random_teacher=True (tests and '
                    'timing only).')
            plan.append((name, entry, source, path, ckpt_key))
        if not sum(float(e.get('weight', 1.0)) for _, e, _, _, _ in plan) > 0:
            raise TeacherConfigError(f'{key}.teachers: every weight is 0; the ensemble needs '
                                     'a positive one.')
        cache_cfg = dict(teacher_cache) if teacher_cache else None
        built = {}
        for name, entry, source, path, ckpt_key in plan:
            model = TEACHERS.build(entry['model'])
            if path is not None:
                who = '' if source == 'teacher' else f' {name!r}'
                print_log(f'teacher{who} checkpoint: {path}', logger='current')
                load_teacher_weights(model, path)
            else:
                print_log(f'{key}: allow_random_teacher=True and no {ckpt_key}: the teacher '
                          'keeps its random initial weights.', logger='current', level=30)
            cache = None
            if cache_cfg:
                # one folder per teacher; the single-teacher form keeps the folder itself
                folder = cache_cfg['cache_dir'] if source == 'teacher' else \
                    os.path.join(cache_cfg['cache_dir'], name)
                cache = TeacherCache(**dict(cache_cfg, cache_dir=folder))
            built[name] = FrozenTeacher(name, model, source, entry.get('weight', 1.0),
                                        path, cache)
        ensemble = dict(ensemble or {})
        unknown = sorted(set(ensemble) - {'temperature'})
        if unknown:
            raise TeacherConfigError(f'{key}.teacher_ensemble: unknown key(s) {unknown}; it '
                                     'takes temperature.')
        return cls(built, ensemble.get('temperature', 1.0))

    @staticmethod
    def _entry(name, entry, key):
        where = f'{key}.teachers.{name}'
        if not _NAME.match(str(name)) or name == ENSEMBLE:
            raise TeacherConfigError(
                f'{where}: a teacher name must be a Python identifier other than '
                f'{ENSEMBLE!r} (losses read t_logits.<name>); rename it.')
        if not isinstance(entry, dict) or 'model' not in entry:
            raise TeacherConfigError(f'{where}: give dict(model=<captioner config>, ckpt=<path>, '
                                     'feature_key=None, weight=1.0).')
        unknown = sorted(set(entry) - set(_ENTRY_KEYS))
        if unknown:
            raise TeacherConfigError(f'{where}: unknown key(s) {unknown}; it takes '
                                     f'{list(_ENTRY_KEYS)}.')
        entry = dict(entry)
        weight = entry.get('weight', 1.0)
        if not isinstance(weight, (int, float)) or weight < 0:
            raise TeacherConfigError(f'{where}.weight must be a number >= 0 (its share of the '
                                     f'ensemble), got {weight!r}.')
        if entry.get('feature_key') is not None:
            # the same architecture on another feature set: the entry says which input
            entry['model'] = dict(entry['model'], feature_key=entry['feature_key'])
        return entry

    def bind(self, student):
        """Map each teacher's vocabulary onto a compact student's tokens (see
        :mod:`.vocab_map`) and tie each teacher cache to the teacher and vocabularies."""
        for t in self:
            try:
                t.vocab_map = VocabMap.build(student.tokenizer, t.model.tokenizer)
            except VocabMapError as exc:
                where = 'model.student (compact vocabulary)'
                if t.source != 'teacher':
                    where += f' and teacher {t.name!r}'
                raise TeacherConfigError(f'{where}: {exc}') from None
            if t.cache is not None:
                t.cache.bind(dict(t.signature(),
                                  student_vocabulary=_fingerprint(student.tokenizer)))

    def check_vocabularies(self, student, users):
        """``users``: teacher name -> the loss comparing it token by token with the
        student. Each such teacher needs the student's tokens in the same order (or a
        compact student whose tokens it has, mapped in :meth:`bind`)."""
        s_tok = student.tokenizer
        for name, loss in users.items():
            t = self[name]
            if t.vocab_map is not None:
                continue
            t_tok = t.model.tokenizer
            s_fp, t_fp = s_tok.fingerprint(), t_tok.fingerprint()
            if s_fp != t_fp:
                single = t.source == 'teacher'
                teacher = 'model.teacher' if single else f'model.teachers.{name}.model'
                raise TeacherConfigError(
                    f'distill loss {loss!r} compares teacher and student token by token, '
                    f'but their vocabularies differ (student: {s_tok.vocab_size} tokens, '
                    f'fingerprint {s_fp}; teacher{"" if single else " " + repr(name)}: '
                    f'{t_tok.vocab_size} tokens, fingerprint {t_fp}); give model.student and '
                    f'{teacher} the same tokenizer (same vocab_file), or use a feature-level '
                    'or sequence-level loss.')

    # -- access --------------------------------------------------------------------
    def __iter__(self):
        return iter(self._teachers.values())

    def __len__(self):
        return len(self._teachers)

    def __contains__(self, name):
        return name in self._teachers

    def __getitem__(self, name):
        return self._teachers[name]

    @property
    def names(self):
        return list(self._teachers)

    @property
    def primary(self):
        """The first teacher listed (sequence-KD captions, on-policy scoring)."""
        return next(iter(self._teachers.values()))

    def by_source(self, source):
        return next(t for t in self if t.source == source)

    def sources(self):
        """Recorder source -> teacher model, every accepted spelling."""
        out = {t.source: t.model for t in self}
        out.update({f'teacher.{t.name}': t.model for t in self})
        if len(self) == 1:
            out['teacher'] = self.primary.model
        return out

    def canonical_source(self, source):
        """A recorder's ``source`` as the teacher's own (``'teacher'`` alone means the
        only teacher); None for a source that is no teacher's."""
        if source == 'teacher' and len(self) == 1:
            return self.primary.source
        if isinstance(source, str) and source.startswith('teacher.') \
                and source[8:] in self._teachers:
            return self[source[8:]].source
        return None

    def canonical_tensor(self, tensor, where):
        """``t_logits`` / ``t_logits.<name>`` / ``t_logits.ensemble`` (and the other
        per-teacher tensors) as the name the algorithm computes; None if ``tensor`` is
        no teacher tensor. Ambiguous or unknown names raise, naming the choices."""
        base, _, name = tensor.partition('.')
        if base not in TEACHER_TENSORS:
            return None
        if not name:
            if len(self) == 1:
                return self.primary.tensor(base)
            raise TeacherConfigError(
                f'{where} reads {base} but there are {len(self)} teachers ({", ".join(self.names)}'
                f'): name one, {base}.<name>' + (f', or {base}.{ENSEMBLE}' if base == 't_logits'
                                                  else '') + '.')
        if name == ENSEMBLE:
            if base != 't_logits':
                raise TeacherConfigError(f'{where} reads {tensor}: only t_logits has an '
                                         f'ensemble (t_logits.{ENSEMBLE}); name one teacher.')
            return tensor
        if name not in self._teachers:
            raise TeacherConfigError(
                f'{where} reads {tensor}: there is no teacher {name!r} (teachers: '
                f'{", ".join(self.names)}{", " + ENSEMBLE if base == "t_logits" else ""}).')
        return self[name].tensor(base)

    def split_tensor(self, tensor):
        """A canonical teacher tensor -> (teacher name or ENSEMBLE, base name)."""
        base, _, name = tensor.partition('.')
        return (name or self.primary.name), base

    # -- freezing and checking -----------------------------------------------------
    def apply(self, fn, *args, **kwargs):
        """``Module._apply`` on every teacher (``.to()``, ``.half()``); checksums follow."""
        for t in self:
            t.model._apply(fn, *args, **kwargs)
            t.reset_checksum()

    def eval(self):
        for t in self:
            t.model.eval()

    def check(self):
        """Raise :class:`TeacherChangedError` if any teacher changed or was unfrozen."""
        for t in self:
            t.check()

    # -- tensors -------------------------------------------------------------------
    def ensemble(self, logits):
        """``t_logits.ensemble`` from every teacher's logits (name -> tensor)."""
        return mixture_logits([logits[t.name] for t in self], [t.weight for t in self],
                              self.ensemble_temperature)

    def tensors(self, reads, run, video_ids, tokens, mask, student):
        """The teacher tensors of a batch: ``reads`` maps a teacher name to the base
        names (``t_logits``, ``t_hidden``) and recorder names it must give; each
        teacher's come from its cache or from ``run(teacher, names)``. Base names come
        back as the losses read them (:meth:`FrozenTeacher.tensor`), and
        ``t_logits.ensemble`` when ``reads`` has it (under :data:`ENSEMBLE`)."""
        out = {}
        for t in self:  # config order
            names = reads.get(t.name)
            if not names:
                continue
            vocab = (student if t.vocab_map else t.model).head.word_embed.num_embeddings
            got = t.outputs(names, lambda t=t, names=names: run(t, names), video_ids, tokens,
                            mask, vocab, student.tokenizer.pad_id)
            out.update({t.tensor(n) if n in TEACHER_TENSORS else n: v for n, v in got.items()})
        if ENSEMBLE in reads:
            out[f't_logits.{ENSEMBLE}'] = self.ensemble(
                {t.name: out[t.tensor('t_logits')] for t in self})
        return out

    def required_batch_keys(self, names):
        """Batch key -> who needs it: the feature inputs of the teachers ``names``."""
        need = {}
        for name in names:
            key = self[name].feature_key
            if key is not None:
                who = 'the teacher' if self[name].source == 'teacher' else f'teacher {name!r}'
                need[key] = (f'{who} (its feature_key; add {key!r} to '
                             'train_dataloader.dataset.feature_dirs)')
        return need
