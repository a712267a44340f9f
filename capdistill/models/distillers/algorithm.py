"""The distillation algorithm: a student learning from frozen teachers.

Each concern has one home: the teachers (loading, freezing, checksums, the teacher
cache, several teachers and their ensemble) in :mod:`.teachers`; the captions a loss
can be computed on (ground truth, teacher captions, student samples) in
:mod:`.caption_sources`; recorded module outputs in :mod:`.recorders`; a compact
student's vocabulary in :mod:`.vocab_map`. This module wires the tensors into the
losses and checks that wiring at build time.
"""
import inspect
import re

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModel

from capdistill.registry import CONNECTORS, LOSSES, MODELS, STUDENTS
from capdistill.utils import CheckpointError, load_student_checkpoint, resolve_checkpoint
from capdistill.utils.requirements import check_batch_keys, merge_requirements
from .caption_sources import ONPOLICY_SIDE, TeacherCaptions, build_onpolicy
from .recorders import RecorderError, RecorderManager
from .teachers import ENSEMBLE, DistillConfigError, TeacherChangedError, Teachers
from .vocab_map import VocabMap

# Tensors every distillation step can offer to the losses, by name (see the class doc).
DEFAULT_INPUTS = dict(student='s_logits', teacher='t_logits', mask='mask')
BUILTIN = {
    's_logits', 't_logits', 'mask', 'targets', 'weight', 's_hidden', 't_hidden',
    's_word_embed', 't_word_embed', 'seq_logits', 'seq_targets', 'seq_mask'} | ONPOLICY_SIDE
SEQ_SIDE = {'seq_logits', 'seq_targets', 'seq_mask'}
# Tensors that need no ground-truth caption: a term reading them learns from unlabeled
# videos (dataset unlabeled_ids); every other term ignores those rows (see loss()).
TEACHER_DRIVEN = SEQ_SIDE | ONPOLICY_SIDE
# Tensors indexed by the teacher's vocabulary (or computed from the student's token ids
# fed through the teacher's head): they mean something only if both vocabularies are the
# same tokens in the same order. The seq_* tensors are not among them: the teacher's
# captions reach the student as text and are re-tokenised with the student's vocabulary.
# (per teacher: t_logits.<name> etc. count as their base name)
TOKEN_LEVEL = {'t_logits', 't_hidden', 't_word_embed', 'op_t_logits'}
_CALL = re.compile(r'^\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$')


def _required_args(module):
    params = inspect.signature(module.forward).parameters.values()
    return [p.name for p in params
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def parse_source(expr):
    """``'obj(s_obj)'`` -> ``(['obj'], 's_obj')``: connectors (outermost first), tensor."""
    connectors = []
    expr = expr.strip()
    while True:
        match = _CALL.match(expr)
        if not match:
            break
        connectors.append(match.group(1))
        expr = match.group(2).strip()
    return connectors, expr


def _shape(value):
    return tuple(value.shape) if torch.is_tensor(value) else type(value).__name__


@MODELS.register_module()
class DistillAlgorithm(BaseModel):
    """Owns a trainable student, its frozen teachers and the wiring between them.

    The teachers (:mod:`.teachers`) stay outside the module tree: not in the state dict
    (the checkpoint holds the student and connectors only), never wrapped in DDP, always
    in eval mode with ``requires_grad=False``, run under ``no_grad``; ``.to()`` still
    moves them. Their weights' checksums are compared every ``teacher_check_interval``
    training steps (and by :meth:`check_teacher`); a change raises
    :class:`TeacherChangedError`.

    Wiring::

        recorders=dict(s_obj=dict(source='student', module='encoder.objects'),
                       t_tok=dict(source='teacher', module='encoder', output=0)),
        connectors=dict(obj=dict(type='LinearConnector', in_dim=128, out_dim=256)),
        distill_losses=dict(loss_obj=dict(type='FeatureMSELoss', loss_weight=0.5,
                                          inputs=dict(student='obj(s_obj)', teacher='t_tok')))

    A recorder hooks a module instance of ``source`` (``'student'``, ``'teacher'`` or
    ``'teacher.<name>'``; see :mod:`.recorders`: ``module``, ``output`` to pick a
    tuple/dict element, ``step`` for modules called once per decoding step). A loss
    input is a tensor name, optionally wrapped in connectors: ``'b(a(x))'`` applies
    connector ``a`` then ``b`` to tensor ``x``. Tensor names: the recorders, and

    * ``s_logits``/``t_logits``: teacher-forced logits on the ground-truth caption
      ``(B, L, V)``; ``s_hidden``/``t_hidden``: the heads' hidden states ``(B, L, E)``;
    * ``mask`` (True on caption tokens), ``targets`` (next-word ids), ``weight``
      (per-caption quality grade, ones when the batch has none);
    * ``s_word_embed``/``t_word_embed``: the heads' word embedding matrices;
    * with several teachers ``t_logits.<name>``, ``t_hidden.<name>``,
      ``t_word_embed.<name>``, and ``t_logits.ensemble``, their weighted mixture
      (``teacher_ensemble``, see :func:`.teachers.mixture_logits`);
    * ``seq_logits``/``seq_targets``/``seq_mask``: the student's logits on, the ids of,
      and the mask of the (first) teacher's own beam-search captions (sequence-level
      KD, see ``seq_kd``);
    * ``op_s_logits``/``op_t_logits``/``op_targets``/``op_mask``/``op_sampled``: the
      on-policy batch (``onpolicy``): student and (first) teacher logits on captions
      the student sampled for a fraction ``lmbda`` of the rows, the ground truth or the
      teacher's captions on the others (see :class:`.caption_sources.OnPolicySource`);
    * ``data.<key>``: a batch entry (``data_samples`` first, then ``inputs``), e.g.
      ``data.obj_tokens``, ``data.feats_mask``.

    Without ``inputs`` a loss gets ``student=s_logits, teacher=t_logits, mask=mask``
    for the arguments its ``forward`` has (with several teachers, ``t_logits`` must be
    named). Every check that can run at build time does: unknown recorder modules,
    unknown tensor, teacher or connector names, loss arguments no input feeds, inputs
    the loss does not take, a distillation loss whose name lacks ``loss`` (mmengine
    back-propagates only such keys), a missing teacher checkpoint, teacher and student
    vocabularies that differ where a loss compares them token by token
    (:meth:`BaseTokenizer.fingerprint`), and (``dry_run``) one pass of recorders,
    connectors and losses on a tiny random batch, so a recorder that never fires or a
    width mismatch stops the build, naming the loss and the shapes. Batch keys the
    terms read (``data.<key>``, caption grades, each used teacher's feature input) are
    checked before the first step (:meth:`required_batch_keys`).

    ``load_from`` and ``resume`` act on the algorithm's own state: a distillation
    checkpoint (``student.*``, ``connectors.*``); teachers always come from their
    checkpoints. To start the student from a captioner run (or an export), use
    ``student_ckpt``; ``load_from`` with a captioner checkpoint is refused.

    Args:
        student (dict): the student captioner (``STUDENTS``).
        teacher (dict): the teacher captioner (``TEACHERS``): one teacher, named
            ``'teacher'``. Or, instead, ``teachers``.
        teacher_ckpt (str): the teacher run's checkpoint: a file, a glob, or
            ``work_dirs/RUN/best``/``latest`` (see :func:`resolve_checkpoint`).
            Required unless ``allow_random_teacher``.
        teachers (dict, optional): ``<name>=dict(model=<captioner config>, ckpt=<path>,
            feature_key=None, weight=1.0)``, in order (the first is primary); see
            :mod:`.teachers`.
        teacher_ensemble (dict, optional): ``dict(temperature=1.0)`` of
            ``t_logits.ensemble`` (weights: each teacher's ``weight``).
        allow_random_teacher (bool): build without teacher checkpoints, the teachers
            keeping their random initial weights (tests, timing).
        student_ckpt (str, optional): initial student weights: a captioner run's
            checkpoint, a distillation checkpoint (its ``student.*``) or an exported
            student (``.safetensors``); keys must match the student exactly.
        recorders (dict): name -> ``dict(source, module, output=None, step=None)``.
        connectors (dict): name -> connector config (``CONNECTORS``).
        distill_losses (dict): name -> loss config (``LOSSES``) with optional ``inputs``.
            In these three dicts an entry set to None is left out (a term switched off).
        student_loss_weight (float): weight of the student's own caption loss.
        teacher_check_interval (int): steps between teacher checksums (0: never).
        teacher_cache (dict, optional): ``dict(cache_dir, topk=32, mode='auto')`` caches
            the teacher outputs the losses use (several teachers: a sub-folder each),
            see :mod:`.teacher_cache`.
        seq_kd (dict, optional): ``dict(beam_size=3, cache_file=None)``: how the
            teacher captions of ``seq_*`` are decoded (once per video, then kept in
            memory and, with ``cache_file``, in a json file reused by later runs).
        onpolicy (dict, optional): ``dict(lmbda=0.5, temperature=1.0, max_len=None,
            seed=0, off_policy='ground_truth')``: the on-policy batch of ``op_*``.
        dry_run (bool): run the build-time pass on a tiny random batch (default True).
    """

    def __init__(self, student, teacher=None, teacher_ckpt=None, recorders=None,
                 connectors=None, distill_losses=None, student_loss_weight=1.0,
                 teacher_check_interval=100, teacher_cache=None, seq_kd=None,
                 allow_random_teacher=False, student_ckpt=None, dry_run=True, onpolicy=None,
                 teachers=None, teacher_ensemble=None,
                 data_preprocessor=dict(type='CaptionDataPreprocessor'), init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.student = STUDENTS.build(student)
        if student_ckpt is not None:
            self._load_student(student_ckpt)
        # not a submodule (see the class docstring); built after the student, as always
        self.__dict__['teachers'] = Teachers.from_config(
            teacher, teacher_ckpt, teachers, allow_random_teacher, teacher_cache,
            teacher_ensemble)
        self.teachers.bind(self.student)
        self.student_loss_weight = student_loss_weight
        # an entry set to None is switched off (a config switch, e.g. --cfg-options
        # model.distill_losses.loss_obj=None model.connectors.obj=None)
        recorders, connectors, distill_losses = (
            {k: v for k, v in (d or {}).items() if v is not None}
            for d in (recorders, connectors, distill_losses))
        for cfg in recorders.values():  # 'teacher' alone means the only teacher
            source = self.teachers.canonical_source(cfg.get('source'))
            if source is not None:
                cfg['source'] = source
        self.recorders = RecorderManager(
            dict(student=self.student, **{t.source: t.model for t in self.teachers}),
            recorders)
        self.connectors = torch.nn.ModuleDict(
            {name: CONNECTORS.build(cfg) for name, cfg in (connectors or {}).items()})
        self.distill_losses = torch.nn.ModuleDict()
        self.loss_inputs = {}
        for name, cfg in (distill_losses or {}).items():
            if 'loss' not in name:
                raise DistillConfigError(
                    f"distill loss {name!r}: its name must contain 'loss' (mmengine "
                    f'back-propagates only such keys); rename it, e.g. loss_{name}')
            cfg = dict(cfg)
            mapping = cfg.pop('inputs', None)
            loss = LOSSES.build(cfg)
            params = inspect.signature(loss.forward).parameters
            mapping = dict(mapping or {k: v for k, v in DEFAULT_INPUTS.items() if k in params})
            self.loss_inputs[name] = self._check_mapping(name, cfg['type'], loss, params,
                                                         mapping)
            self.distill_losses[name] = loss
        self._used = {t for m in self.loss_inputs.values() for _, t in m.values()}
        self._checked_recorders = False
        self._checked_batch = False
        self.teacher_check_interval = teacher_check_interval
        self._steps = 0
        self.teacher_captions = TeacherCaptions(**(seq_kd or {}))
        self._seq_captions = self.teacher_captions.captions
        # a compact student's teacher scores sampled rows through the vocabulary map
        self.__dict__['_op_teacher'] = VocabMap.teacher_for(self.student, self.teacher) \
            if onpolicy else self.teacher
        self.onpolicy = build_onpolicy(onpolicy, self._used, self.student, self._op_teacher)
        self.teachers.check_vocabularies(self.student, self._token_level_users())
        if dry_run and self.distill_losses:
            self._dry_run()

    @property
    def teacher(self):
        """The (first) teacher's captioner."""
        return self.teachers.primary.model

    @property
    def teacher_cache(self):
        """The (first) teacher's :class:`.TeacherCache`, or None."""
        return self.teachers.primary.cache

    # -- building ----------------------------------------------------------------
    def _check_mapping(self, name, type_, loss, params, mapping):
        """The loss's ``arg -> (connectors, tensor)``, every name checked; teacher
        tensors in the name the algorithm computes them under."""
        where = f'distill loss {name!r} ({type_})'
        unfed = [a for a in _required_args(loss) if a not in mapping]
        if unfed:
            raise ValueError(f'{where}: no input feeds argument(s) {unfed}; add them to '
                             'its inputs=dict(...).')
        takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
        extra = [a for a in mapping if a not in params]
        if extra and not takes_kwargs:
            raise ValueError(f'{where}: forward() has no argument(s) {extra}; it takes '
                             f'{[p for p in params if p != "self"]}.')
        out = {}
        for arg, src in mapping.items():
            conns, tensor = parse_source(src)
            for conn in conns:
                if conn not in self.connectors:
                    raise ValueError(f'{where}: input {arg}={src!r} uses connector {conn!r}, '
                                     f'which is not in connectors ({sorted(self.connectors)}).')
            teacher_side = self.teachers.canonical_tensor(tensor, f'{where}: input {arg}')
            if teacher_side is None and tensor not in BUILTIN and tensor not in self.recorders \
                    and not tensor.startswith('data.'):
                raise ValueError(
                    f'{where}: input {arg}={src!r} names no tensor {tensor!r}. Use a recorder '
                    f'({sorted(self.recorders)}), data.<batch key>, or one of {sorted(BUILTIN)}'
                    + (f' (t_*.<teacher>: {", ".join(self.teachers.names)}, t_logits.'
                       f'{ENSEMBLE})' if len(self.teachers) > 1 else '') + '.')
            out[arg] = (conns, teacher_side or tensor)
        return out

    def _load_student(self, spec):
        path = resolve_checkpoint(spec, 'Student checkpoint', 'model.student_ckpt')
        load_student_checkpoint(self.student, path, f'model.student_ckpt {path}')
        print_log(f'student initialised from: {path}', logger='current')

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        own = [k for k in state_dict if k.startswith(prefix)]
        if own and not any(k.startswith(f'{prefix}student.') for k in own):
            student_keys = set(self.student.state_dict())
            if any(k[len(prefix):] in student_keys for k in own):
                raise CheckpointError(
                    'the checkpoint given to load_from is a captioner\'s (no student.* '
                    'keys), not a distillation run\'s: to start the student from it set '
                    'model.student_ckpt=<that file> and load_from=None.')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _teacher_of(self, tensor):
        """The teacher names a used tensor reads (none for the student's side)."""
        if tensor in self.recorders:
            source = self.recorders.source(tensor)
            return [] if source == 'student' else [self.teachers.by_source(source).name]
        base, _, name = tensor.partition('.')
        if base in ('t_logits', 't_hidden', 't_word_embed'):
            return self.teachers.names if name == ENSEMBLE else [name or self.teacher_name]
        if tensor in SEQ_SIDE | ONPOLICY_SIDE:
            return [self.teacher_name]
        return []

    @property
    def teacher_name(self):
        return self.teachers.primary.name

    def _token_level_users(self):
        """Teacher name -> the first loss comparing it with the student token by token
        (its logits, hidden states or embeddings, or a recorder in its head)."""
        users = {}
        for loss, mapping in self.loss_inputs.items():
            for _, t in mapping.values():
                head = t in self.recorders and self.recorders.source(t) != 'student' and \
                    self.recorders.recorders[t].module_path.startswith('head')
                if head or t.partition('.')[0] in TOKEN_LEVEL:
                    for name in self._teacher_of(t):
                        users.setdefault(name, loss)
        return users

    @property
    def uses_unlabeled(self):
        """True if a term learns from videos without captions (reads TEACHER_DRIVEN)."""
        return bool(self._used & TEACHER_DRIVEN)

    def required_batch_keys(self):
        """Batch key -> the term that needs it (checked on the first training batch)."""
        need = {}
        for name in self.distill_losses:
            for _, tensor in self.loss_inputs[name].values():
                if tensor.startswith('data.'):
                    need = merge_requirements(need, {tensor[5:]: f'distill loss {name!r}'})
                elif tensor == 'weight':
                    need = merge_requirements(need, {'grade': f'distill loss {name!r}'})
            extra = getattr(type(self.distill_losses[name]), 'required_batch_keys', None)
            if isinstance(extra, dict):
                need = merge_requirements(
                    need, {k: f'distill loss {name!r}' for k in dict(extra)})
        own = getattr(self.student, 'required_batch_keys', None)
        if self.student_loss_weight and callable(own):
            need = merge_requirements(need, {k: f'the student ({v})' for k, v in own().items()})
        used = {n for t in self._used for n in self._teacher_of(t)}
        return merge_requirements(need, self.teachers.required_batch_keys(
            [n for n in self.teachers.names if n in used]))

    def _dummy_batch(self, batch_size=2, frames=4):
        """Random inputs of the widths the student's and teachers' configs read."""
        g = torch.Generator().manual_seed(0)
        inputs = {}
        for model in (self.student, *(t.model for t in self.teachers)):
            key = getattr(model, 'feature_key', None)
            dim = getattr(getattr(model, 'visual_encoder', None), 'in_dim', None)
            if key is None or dim is None:
                return None
            inputs[key] = torch.randn(batch_size, frames, dim, generator=g)
            inputs[f'{key}_mask'] = torch.ones(batch_size, frames, dtype=torch.bool)
        tok = self.student.tokenizer
        vocab = min([tok.vocab_size] + [t.model.tokenizer.vocab_size for t in self.teachers])
        length = min(self.student.max_len, 4)
        tokens = torch.randint(4, max(vocab, 5), (batch_size, length + 2), generator=g)
        tokens[:, 0], tokens[:, -1] = tok.bos_id, tok.eos_id
        samples = dict(tokens=tokens, video_id=[f'dry{i}' for i in range(batch_size)],
                       weight=torch.ones(batch_size))
        for key in ('obj_tokens', 'act_tokens'):
            samples[key] = torch.randint(4, max(vocab, 5), (batch_size, 3), generator=g)
        return inputs, samples

    @torch.no_grad()
    def _dry_run(self):
        """One pass of recorders, connectors and losses on a tiny random batch.

        Width mismatches surface here, naming the loss and the shapes, rather than at
        the first step. Losses reading ``seq_*`` (teacher beam search) or batch keys a
        dummy batch cannot invent are left to the first step; the teacher caches are
        not touched.
        """
        batch = self._dummy_batch()
        if batch is None:
            return
        inputs, samples = batch
        names = [n for n, m in self.loss_inputs.items()
                 if not any(t in SEQ_SIDE | ONPOLICY_SIDE or (t.startswith('data.') and t[5:] not in inputs
                                              and t[5:] not in samples)
                            for _, t in m.values())]
        if not names:
            return
        was_training = self.training
        caches = [t.cache for t in self.teachers]
        self.eval()
        for t in self.teachers:
            t.cache = None
        try:
            tokens = samples['tokens']
            targets = tokens[:, 1:]
            mask = targets != self.student.tokenizer.pad_id
            s_logits, s_hidden = self._run(self.student, 'student', inputs, tokens,
                                           's_hidden' in self._used)
            tensors = dict(s_logits=s_logits, s_hidden=s_hidden, mask=mask, targets=targets,
                           weight=samples['weight'])
            tensors.update(self._teacher_tensors(inputs, samples, tokens, mask))
            self.recorders.check_fired([n for n in self.recorders
                                        if self.recorders.source(n) == 'student' or n in tensors])
            for name in names:
                self._loss_term(name, tensors, inputs, samples, dry=True)
        finally:
            for t, cache in zip(self.teachers, caches):
                t.cache = cache
            for rec in self.recorders.recorders.values():
                rec.reset()
            self.train(was_training)

    def _loss_term(self, name, tensors, inputs, data_samples, dry=False):
        kwargs = {}
        for arg, (conns, tensor) in self.loss_inputs[name].items():
            value = self._resolve(tensor, tensors, inputs, data_samples)
            for conn in reversed(conns):
                if not dry:
                    value = self.connectors[conn](value)
                    continue
                try:
                    value = self.connectors[conn](value)
                except (RuntimeError, ValueError, IndexError) as exc:
                    raise DistillConfigError(
                        f'distill loss {name!r}: connector {conn!r} cannot take its input '
                        f'{arg}={tensor!r} of shape {_shape(value)} '
                        f'({str(exc).splitlines()[0]}); set its in_dim to the last size of '
                        f'that shape.') from None
            kwargs[arg] = value
        if not dry:
            return self.distill_losses[name](**kwargs)
        try:
            return self.distill_losses[name](**kwargs)
        except (RuntimeError, ValueError, IndexError) as exc:
            shapes = ', '.join(f'{arg} {_shape(v)}' for arg, v in kwargs.items())
            raise DistillConfigError(
                f'distill loss {name!r} ({type(self.distill_losses[name]).__name__}) fails on '
                f'inputs of shapes {shapes}: {str(exc).splitlines()[0]}. Check the '
                'connectors\' in_dim/out_dim and the recorded modules.') from None

    # -- the frozen teachers (see .teachers) --------------------------------------------
    def check_teacher(self):
        """Raise :class:`TeacherChangedError` if a teacher's weights or mode changed."""
        self.teachers.check()

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.teachers.apply(fn, *args, **kwargs)
        return self

    def train(self, mode=True):
        super().train(mode)
        self.teachers.eval()
        return self

    # -- forward -----------------------------------------------------------------
    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.student.predict(inputs, data_samples)
        return self.student(inputs, data_samples, mode='tensor')

    def _run(self, model, source, inputs, tokens, hidden):
        """Teacher-forced logits (and hidden states) of the student or of the teacher
        whose recorder source ``source`` is, its recorders active."""
        self.recorders.start(source)
        try:
            if source == 'student':
                out = model.caption_logits(inputs, tokens, return_hidden=hidden)
            else:  # through a compact student's vocabulary map, under no_grad
                out = self.teachers.by_source(source).caption_logits(inputs, tokens, hidden)
        finally:
            self.recorders.stop(source)
        return out if hidden else (out, None)

    def _teacher_tensors(self, inputs, data_samples, tokens, mask):
        """Every teacher tensor the losses read (each teacher's from its cache or its
        forward), plus ``t_logits.ensemble``."""
        reads = {}
        for n in self._used:
            if n in self.recorders:
                if self.recorders.source(n) != 'student':
                    reads.setdefault(self._teacher_of(n)[0], set()).add(n)
                continue
            base = n.partition('.')[0]
            if base in ('t_logits', 't_hidden'):
                for name in self._teacher_of(n):
                    reads.setdefault(name, set()).add(base)
        out = {}
        for name in self.teachers.names:  # config order
            if name not in reads:
                continue
            t, names = self.teachers[name], reads[name]

            def run(t=t, names=names):
                logits, hidden = self._run(t.model, t.source, inputs, tokens,
                                           't_hidden' in names)
                got = dict(t_logits=logits, t_hidden=hidden)
                return {n: self.recorders.get(n) if n in self.recorders else got[n]
                        for n in names}
            vocab = (self.student if t.vocab_map else t.model).head.word_embed.num_embeddings
            got = t.outputs(names, run, data_samples['video_id'], tokens, mask, vocab,
                            self.student.tokenizer.pad_id)
            out.update({n if n in self.recorders else t.tensor(n): v for n, v in got.items()})
        if f't_logits.{ENSEMBLE}' in self._used:
            out[f't_logits.{ENSEMBLE}'] = self.teachers.ensemble(
                {t.name: out[t.tensor('t_logits')] for t in self.teachers})
        return out

    def _seq_tensors(self, inputs, data_samples, device):
        """Student logits on the teacher's beam-search captions (decoded once per video)."""
        seq = self._teacher_caption_tokens(inputs, data_samples, device)
        targets = seq[:, 1:]
        return dict(seq_logits=self.student.caption_logits(inputs, seq),
                    seq_targets=targets, seq_mask=targets != self.student.tokenizer.pad_id)

    def _teacher_caption_tokens(self, inputs, data_samples, device):
        return self.teacher_captions.tokens(self.teacher, self.student.tokenizer,
                                            self.student.max_len, inputs,
                                            data_samples['video_id'], device)

    def _resolve(self, tensor, tensors, inputs, data_samples):
        if tensor in tensors:
            return tensors[tensor]
        if tensor in self.recorders:
            return self.recorders.get(tensor)
        if tensor.startswith('data.'):
            key = tensor[5:]
            for source in (data_samples, inputs):
                if key in source:
                    value = source[key]
                    if isinstance(value, (list, tuple)) and value and torch.is_tensor(value[0]):
                        value = torch.stack(list(value))
                    return value.to(tensors['mask'].device) if torch.is_tensor(value) else value
            raise KeyError(f'Loss input {tensor!r}: the batch has no {key!r} (data_samples: '
                           f'{sorted(data_samples)}, inputs: {sorted(inputs)}). Enable it in '
                           'the dataset (e.g. concepts=..., grade=...).')
        if tensor == 's_word_embed':
            return self.student.head.word_embed.weight
        if tensor.partition('.')[0] == 't_word_embed':
            return self.teachers[self._teacher_of(tensor)[0]].word_embed()
        raise KeyError(tensor)

    def loss(self, inputs, data_samples):
        if not self._checked_batch:
            # grades cannot be told from a batch (every caption weighs 1 without them):
            # DataRequirementsHook checks them on the dataset
            check_batch_keys({k: v for k, v in self.required_batch_keys().items()
                              if k != 'grade'}, data_samples, inputs)
            self._checked_batch = True
        tokens = data_samples['tokens']
        targets = tokens[:, 1:]
        mask = targets != self.student.tokenizer.pad_id
        s_logits, s_hidden = self._run(self.student, 'student', inputs, tokens,
                                       's_hidden' in self._used)
        losses = {}
        weight = data_samples.get('weight')
        labeled = data_samples.get('labeled')
        if labeled is not None:
            # the one place unlabeled rows leave every caption-based term: zero weight
            # (student caption loss, 'weight') and no tokens ('mask'); seq_* keep them
            labeled = torch.as_tensor(labeled, dtype=torch.bool, device=tokens.device)
            mask = mask & labeled[:, None]
            weight = labeled.float() if weight is None else \
                torch.as_tensor(weight, device=tokens.device) * labeled
        if self.student_loss_weight:
            losses['student.loss_caption'] = self.student_loss_weight * self.student.caption_loss(
                s_logits, targets, weight)
        if not self.distill_losses:
            return losses
        if weight is None:
            weight = torch.ones(tokens.shape[0], device=tokens.device)
        tensors = dict(s_logits=s_logits, s_hidden=s_hidden, mask=mask, targets=targets,
                       weight=torch.as_tensor(weight, device=tokens.device))
        tensors.update(self._teacher_tensors(inputs, data_samples, tokens, mask))
        if self._used & SEQ_SIDE:
            tensors.update(self._seq_tensors(inputs, data_samples, tokens.device))
        if self.onpolicy is not None:
            tensors.update(self.onpolicy(
                self.student, self._op_teacher, inputs, tokens, labeled=labeled,
                teacher_tokens=lambda: self._teacher_caption_tokens(
                    inputs, data_samples, tokens.device)))
        if not self._checked_recorders:
            uncached = not any(t.cache for t in self.teachers)
            self.recorders.check_fired([n for n in self.recorders
                                        if self.recorders.source(n) == 'student'
                                        or n in tensors or uncached])
            self._checked_recorders = True
        for name in self.distill_losses:
            losses[f'distill.{name}'] = self._loss_term(name, tensors, inputs, data_samples)
        self._steps += 1
        if self.teacher_check_interval and self._steps % self.teacher_check_interval == 0:
            self.check_teacher()
        return losses


__all__ = ['DistillAlgorithm', 'DistillConfigError', 'RecorderError', 'TeacherChangedError',
           'parse_source']
