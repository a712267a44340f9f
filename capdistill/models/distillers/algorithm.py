"""The distillation algorithm: a student learning from frozen teachers.

Each concern has one home: the teachers (loading, freezing, checksums, the teacher
cache, several teachers and their ensemble) in :mod:`.teachers`; the captions a loss
can be computed on (ground truth, teacher captions, student samples) in
:mod:`.caption_sources`; the wiring of tensors into losses in :mod:`.wiring`; recorded
module outputs in :mod:`.recorders`; a compact student's vocabulary in
:mod:`.vocab_map`. This module owns the parts and runs one training step.
"""
import inspect

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModel

from capdistill.registry import CONNECTORS, LOSSES, MODELS, STUDENTS
from capdistill.utils import CheckpointError, load_student_checkpoint, resolve_checkpoint
from capdistill.utils.requirements import check_batch_keys, merge_requirements
from .caption_sources import TeacherCaptions, build_onpolicy
from .recorders import RecorderError, RecorderManager
from .teachers import (ENSEMBLE, DistillConfigError, HoldsTeachers, TeacherChangedError,
                       Teachers)
from .vocab_map import VocabMap
from .wiring import (DEFAULT_INPUTS, SEQ_SIDE, TEACHER_DRIVEN, check_mapping, dummy_batch,
                     loss_term, parse_source, resolve, teachers_of, token_level_users)


@MODELS.register_module()
class DistillAlgorithm(HoldsTeachers, BaseModel):
    """Owns a trainable student, its frozen teachers and the wiring between them.

    The teachers (:mod:`.teachers`) stay outside the module tree: not in the state dict
    (the checkpoint holds the student and connectors only), never wrapped in DDP, always
    in eval mode with ``requires_grad=False``, run under ``no_grad``; ``.to()`` still
    moves them. Their weights' checksums are compared every ``teacher_check_interval``
    training steps (and by :meth:`check_teacher`); a change raises
    :class:`TeacherChangedError`.

    Recorders (``source='student'``, ``'teacher'`` or ``'teacher.<name>'``),
    connectors and losses are wired by tensor name; the names, the syntax and the
    default inputs are in :mod:`.wiring` (with several teachers, ``t_logits`` must be
    named: ``t_logits.<name>`` or ``t_logits.ensemble``).

    Every check that can run at build time does: unknown recorder modules, unknown
    tensor, teacher or connector names, loss arguments no input feeds, inputs the loss
    does not take, a distillation loss whose name lacks ``loss`` (mmengine
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
        teacher_cache (dict, optional): ``dict(cache_dir, topk=32, mode='auto',
            verify_every=100)`` caches the teacher outputs the losses use (several
            teachers: a sub-folder each), see :mod:`.teacher_cache`.
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
        self.hold_teachers(Teachers.from_config(
            teacher, teacher_ckpt, teachers, allow_random_teacher, teacher_cache,
            teacher_ensemble))
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
            self.loss_inputs[name] = check_mapping(name, cfg['type'], loss, mapping,
                                                   self.connectors, self.recorders,
                                                   self.teachers)
            self.distill_losses[name] = loss
        self._used = {t for m in self.loss_inputs.values() for _, t in m.values()}
        self._checked_recorders = False
        self._checked_batch = False
        self.teacher_check_interval = teacher_check_interval
        self._steps = 0
        self.teacher_captions = TeacherCaptions(**(seq_kd or {}))
        if self.teacher_captions.cache_file and len(self.teachers):
            self.teacher_captions.bind(self.teachers.primary.signature())
        self._seq_captions = self.teacher_captions.captions
        # a compact student's teacher scores sampled rows through the vocabulary map
        self.__dict__['_op_teacher'] = VocabMap.teacher_for(self.student, self.teacher) \
            if onpolicy else self.teacher
        self.onpolicy = build_onpolicy(onpolicy, self._used, self.student, self._op_teacher)
        self.teachers.check_vocabularies(
            self.student, token_level_users(self.loss_inputs, self.recorders, self.teachers))
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
    def _load_student(self, spec):
        path = resolve_checkpoint(spec, 'Student checkpoint', 'model.student_ckpt')
        load_student_checkpoint(self.student, path, f'model.student_ckpt {path}')
        print_log(f'student initialised from: {path}', logger='current')

    def check_checkpoint_state(self, state_dict, prefix=''):
        """Refuse a captioner's weights given as ``load_from`` (they belong in
        ``model.student_ckpt``); :class:`~capdistill.engine.hooks.CheckpointMatchHook`
        asks this before its own name and shape check."""
        own = [k for k in state_dict if k.startswith(prefix)]
        if own and not any(k.startswith(f'{prefix}student.') for k in own):
            student_keys = set(self.student.state_dict())
            if any(k[len(prefix):] in student_keys for k in own):
                raise CheckpointError(
                    'the checkpoint given to load_from is a captioner\'s (no student.* '
                    'keys), not a distillation run\'s: to start the student from it set '
                    'model.student_ckpt=<that file> and load_from=None.')

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.check_checkpoint_state(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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
        used = {n for t in self._used
                for n in teachers_of(t, self.recorders, self.teachers)}
        return merge_requirements(need, self.teachers.required_batch_keys(
            [n for n in self.teachers.names if n in used]))

    def _dummy_batch(self, batch_size=2, frames=4):
        """Random inputs of the widths the student's and teachers' configs read."""
        return dummy_batch(self.student, self.teachers, batch_size, frames)

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
                 if not any(t in TEACHER_DRIVEN or (t.startswith('data.') and t[5:] not in inputs
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
        return loss_term(name, self.distill_losses[name], self.loss_inputs[name],
                         self.connectors,
                         lambda t: self._resolve(t, tensors, inputs, data_samples), dry)

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
        """Every teacher tensor the losses read (see :meth:`.Teachers.tensors`)."""
        reads = {}
        for n in self._used:
            key = n if n in self.recorders else n.partition('.')[0]
            if key in self.recorders or key in ('t_logits', 't_hidden'):
                for name in teachers_of(n, self.recorders, self.teachers):
                    reads.setdefault(name, set()).add(key)
        if f't_logits.{ENSEMBLE}' in self._used:
            reads[ENSEMBLE] = {'t_logits'}

        def run(t, names):
            logits, hidden = self._run(t.model, t.source, inputs, tokens, 't_hidden' in names)
            got = dict(t_logits=logits, t_hidden=hidden)
            return {n: self.recorders.get(n) if n in self.recorders else got[n] for n in names}
        return self.teachers.tensors(reads, run, data_samples['video_id'], tokens, mask,
                                     self.student)

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
        return resolve(tensor, tensors, inputs, data_samples, self.recorders, self.student,
                       self.teachers)

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
            # a teacher recorder read from the cache did not fire this step; one the
            # teacher computes raises in get() when its module is off the forward path
            uncached = not any(t.cache for t in self.teachers)
            self.recorders.check_fired([n for n in self.recorders
                                        if self.recorders.source(n) == 'student' or uncached])
            self._checked_recorders = True
        for name in self.distill_losses:
            losses[f'distill.{name}'] = self._loss_term(name, tensors, inputs, data_samples)
        self._steps += 1
        if self.teacher_check_interval and self._steps % self.teacher_check_interval == 0:
            self.check_teacher()
        return losses


__all__ = ['DistillAlgorithm', 'DistillConfigError', 'RecorderError', 'TeacherChangedError',
           'parse_source']
