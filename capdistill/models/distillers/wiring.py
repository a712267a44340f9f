"""The wiring of tensors into distillation losses: names, connectors, checks.

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
named).

:func:`check_mapping` refuses at build time every name, connector or argument that
would not resolve; :func:`loss_term` feeds one loss, turning a shape error of the
build-time pass into one line naming the loss and the shapes.
"""
import inspect
import re

import torch

from .caption_sources import ONPOLICY_SIDE
from .teachers import ENSEMBLE, TEACHER_TENSORS, DistillConfigError

__all__ = ['DEFAULT_INPUTS', 'BUILTIN', 'SEQ_SIDE', 'TEACHER_DRIVEN', 'TOKEN_LEVEL',
           'parse_source', 'check_mapping', 'loss_term', 'resolve', 'teachers_of',
           'token_level_users', 'dummy_batch']

# Tensors every distillation step can offer to the losses, by name (see above).
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


def _shape(value):
    return tuple(value.shape) if torch.is_tensor(value) else type(value).__name__


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


def check_mapping(name, type_, loss, mapping, connectors, recorders, teachers):
    """A loss's ``arg -> (connectors, tensor)``, every name checked; teacher tensors in
    the name the algorithm computes them under (see :meth:`.Teachers.canonical_tensor`)."""
    where = f'distill loss {name!r} ({type_})'
    params = inspect.signature(loss.forward).parameters
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
            if conn not in connectors:
                raise ValueError(f'{where}: input {arg}={src!r} uses connector {conn!r}, '
                                 f'which is not in connectors ({sorted(connectors)}).')
        teacher_side = teachers.canonical_tensor(tensor, f'{where}: input {arg}')
        if teacher_side is None and tensor not in BUILTIN and tensor not in recorders \
                and not tensor.startswith('data.'):
            several = len(teachers) > 1
            raise ValueError(
                f'{where}: input {arg}={src!r} names no tensor {tensor!r}. Use a recorder '
                f'({sorted(recorders)}), data.<batch key>, or one of {sorted(BUILTIN)}'
                + (f' (t_*.<teacher>: {", ".join(teachers.names)}; t_logits.{ENSEMBLE})'
                   if several else '') + '.')
        out[arg] = (conns, teacher_side or tensor)
    return out


def loss_term(name, loss, mapping, connectors, resolve, dry=False):
    """``loss`` on the tensors ``mapping`` names (``resolve(tensor)`` gives each), through
    their connectors; with ``dry``, a shape error becomes one :class:`DistillConfigError`."""
    kwargs = {}
    for arg, (conns, tensor) in mapping.items():
        value = resolve(tensor)
        for conn in reversed(conns):
            if not dry:
                value = connectors[conn](value)
                continue
            try:
                value = connectors[conn](value)
            except (RuntimeError, ValueError, IndexError) as exc:
                raise DistillConfigError(
                    f'distill loss {name!r}: connector {conn!r} cannot take its input '
                    f'{arg}={tensor!r} of shape {_shape(value)} '
                    f'({str(exc).splitlines()[0]}); set its in_dim to the last size of '
                    f'that shape.') from None
        kwargs[arg] = value
    if not dry:
        return loss(**kwargs)
    try:
        return loss(**kwargs)
    except (RuntimeError, ValueError, IndexError) as exc:
        shapes = ', '.join(f'{arg} {_shape(v)}' for arg, v in kwargs.items())
        raise DistillConfigError(
            f'distill loss {name!r} ({type(loss).__name__}) fails on inputs of shapes '
            f'{shapes}: {str(exc).splitlines()[0]}. Check the connectors\' in_dim/out_dim '
            'and the recorded modules.') from None


def resolve(tensor, tensors, inputs, data_samples, recorders, student, teachers):
    """The value of a loss input named ``tensor`` in this step."""
    if tensor in tensors:
        return tensors[tensor]
    if tensor in recorders:
        return recorders.get(tensor)
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
        return student.head.word_embed.weight
    if tensor.partition('.')[0] == 't_word_embed':
        return teachers[teachers_of(tensor, recorders, teachers)[0]].word_embed()
    raise KeyError(tensor)


def teachers_of(tensor, recorders, teachers):
    """The names of the teachers a (canonical) tensor reads; none for the student's."""
    if tensor in recorders:
        source = recorders.source(tensor)
        return [] if source == 'student' else [teachers.by_source(source).name]
    base, _, name = tensor.partition('.')
    if base in TEACHER_TENSORS:
        return teachers.names if name == ENSEMBLE else [name or teachers.primary.name]
    if tensor in SEQ_SIDE | ONPOLICY_SIDE:  # the first teacher decodes and scores these
        return [teachers.primary.name]
    return []


def token_level_users(loss_inputs, recorders, teachers):
    """Teacher name -> the first loss comparing it with the student token by token
    (its logits, hidden states or embeddings, or a recorder in its head)."""
    users = {}
    for loss, mapping in loss_inputs.items():
        for _, t in mapping.values():
            head = t in recorders and recorders.source(t) != 'student' and \
                recorders.recorders[t].module_path.startswith('head')
            if head or t.partition('.')[0] in TOKEN_LEVEL:
                for name in teachers_of(t, recorders, teachers):
                    users.setdefault(name, loss)
    return users


def dummy_batch(student, teachers, batch_size=2, frames=4):
    """Random inputs of the widths the student's and teachers' configs read (None when
    a model does not say its input width)."""
    g = torch.Generator().manual_seed(0)
    inputs = {}
    for model in (student, *(t.model for t in teachers)):
        key = getattr(model, 'feature_key', None)
        dim = getattr(getattr(model, 'visual_encoder', None), 'in_dim', None)
        if key is None or dim is None:
            return None
        inputs[key] = torch.randn(batch_size, frames, dim, generator=g)
        inputs[f'{key}_mask'] = torch.ones(batch_size, frames, dtype=torch.bool)
    tok = student.tokenizer
    vocab = min([tok.vocab_size] + [t.model.tokenizer.vocab_size for t in teachers])
    length = min(student.max_len, 4)
    tokens = torch.randint(4, max(vocab, 5), (batch_size, length + 2), generator=g)
    tokens[:, 0], tokens[:, -1] = tok.bos_id, tok.eos_id
    samples = dict(tokens=tokens, video_id=[f'dry{i}' for i in range(batch_size)],
                   weight=torch.ones(batch_size))
    for key in ('obj_tokens', 'act_tokens'):
        samples[key] = torch.randint(4, max(vocab, 5), (batch_size, 3), generator=g)
    return inputs, samples
