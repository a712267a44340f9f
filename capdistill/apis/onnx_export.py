"""Export a captioner to ONNX: an encoder graph and a one-token decoder step graph.

Layout written by :func:`export_onnx` (``tools/deploy.py``)::

    DIR/<name>.json        {"format": "capdistill-onnx", "graphs": {...}, "tokenizer": {...},
                            "frame_encoder", "num_frames", "decode", "state": [...], ...}
    DIR/<name>.onnx        encoder: frame features (B, T, D) + mask (B, T) -> visual tokens,
                           their mask and the caption head's initial decoding state
    DIR/<name>.step.onnx   decoder step: last token (B,), position () and the state ->
                           next-word logits (B, V) and the state one token longer
    DIR/<name>.int8.*      the same, linear layers and output projection in dynamic int8
                           (``--int8``)

The decoding state is the head's own ``start()``/``step()`` state (key/value caches,
key masks, cross-attention keys/values) flattened to a list of batch-first tensors, so
the graphs run exactly the head's code and beam search re-orders the state by
selecting rows (:mod:`capdistill.apis.onnx_runner`). The json's ``frame_encoder``,
``num_frames`` and ``decode`` fields carry the same names as an exported student's json
(:mod:`capdistill.apis.export`).
"""
import copy
import hashlib
import io
import json
import os
import os.path as osp
import warnings

import torch
import torch.nn.functional as F
from torch import nn

FORMAT = 'capdistill-onnx'
OPSET = 17
STEP_SUFFIX = '.step.onnx'
INT8_TAG = '.int8'


class OnnxExportError(ValueError):
    """A model (or a part of it) that cannot be exported to ONNX (one line)."""


# -- the decoding state as a flat list of tensors --------------------------------------
def _flatten(obj, prefix, names, leaves):
    """Tensors of a nested dict/list/tuple state, with dotted names, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        names.append(prefix)
        leaves.append(obj)
        return ('t',)
    if isinstance(obj, dict):
        keys = [k for k in obj if k not in ('length', 'logits_out')]
        return ('d', tuple((k, _flatten(obj[k], f'{prefix}.{k}' if prefix else k, names, leaves))
                           for k in keys))
    if isinstance(obj, (list, tuple)):
        kind = 'l' if isinstance(obj, list) else 'u'
        return (kind, tuple(_flatten(v, f'{prefix}.{i}', names, leaves)
                            for i, v in enumerate(obj)))
    raise OnnxExportError(f'decoding state entry {prefix!r} is a {type(obj).__name__}; only '
                          'tensors, dicts, lists and tuples can cross the ONNX graph boundary')


def flatten_state(state):
    """``(names, tensors, spec)`` of a head's decoding state (``length`` excluded)."""
    names, leaves = [], []
    spec = _flatten(state, '', names, leaves)
    return names, leaves, spec


def unflatten_state(spec, leaves):
    """The nested state back from :func:`flatten_state`'s ``spec`` and tensors."""
    it = iter(leaves)

    def build(node):
        kind = node[0]
        if kind == 't':
            return next(it)
        if kind == 'd':
            return {k: build(sub) for k, sub in node[1]}
        items = [build(sub) for sub in node[1]]
        return items if kind == 'l' else tuple(items)
    return build(spec)


def _spec_to_json(spec):
    kind = spec[0]
    if kind == 't':
        return 't'
    if kind == 'd':
        return {'d': [[k, _spec_to_json(s)] for k, s in spec[1]]}
    return {kind: [_spec_to_json(s) for s in spec[1]]}


def spec_from_json(obj):
    """The inverse of the json form of a state spec (as stored in the export json)."""
    if obj == 't':
        return ('t',)
    (kind, items), = obj.items()
    if kind == 'd':
        return ('d', tuple((k, spec_from_json(s)) for k, s in items))
    return (kind, tuple(spec_from_json(s) for s in items))


def _prefill_caches(state, head):
    """Give every empty self-attention cache zero-length keys/values.

    A head whose ``start()`` leaves a cache empty (the plain transformer decoder) then
    takes the same path through ``step()`` at the first token as at later ones, so a
    single step graph serves all positions.
    """
    caches = state.get('caches') if isinstance(state, dict) else None
    if not caches:
        return state
    for i, cache in enumerate(caches):
        if isinstance(cache, dict) and 'kv' not in cache:
            attn = _self_attention(head, i)
            ref = next(t for t in _tensors(state))
            b = ref.shape[0]
            heads = attn.num_heads
            dim = attn.out.in_features // heads
            cache['kv'] = ref.new_zeros(b, 2, heads, 0, dim, dtype=torch.float32)
    return state


def _self_attention(head, i):
    blk = head.blocks[i]
    for name in ('attn', 'self_attn'):
        if hasattr(blk, name):
            return getattr(blk, name)
    raise OnnxExportError(f'{type(blk).__name__} (head.blocks.{i}) has no self-attention '
                          'module named attn/self_attn; its empty cache cannot be exported')


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


# -- modules whose traced form would fix a shape ----------------------------------------
class ExportableMHA(nn.Module):
    """``nn.MultiheadAttention`` (batch first) recomputed with shapes read at run time.

    PyTorch's own forward multiplies the batch size by the number of heads in Python,
    so a traced graph keeps the example's batch size and length; this one computes the
    same attention (same weights, ``scaled_dot_product_attention``) with every reshape
    taken from the inputs. Attention weights are not returned.
    """

    def __init__(self, mha, name):
        super().__init__()
        if not mha.batch_first or not mha._qkv_same_embed_dim or mha.bias_k is not None \
                or mha.add_zero_attn:
            raise OnnxExportError(
                f'{name} (MultiheadAttention) uses batch_first=False, separate key/value '
                'widths, add_bias_kv or add_zero_attn, which the ONNX export does not cover')
        self.mha = mha
        # nn.TransformerEncoderLayer reads these to decide on its fused fast path, which
        # would bypass this module; batch_first=False sends it down the plain path
        self.batch_first = False
        self._qkv_same_embed_dim = True
        self.in_proj_bias = mha.in_proj_bias
        self.in_proj_weight = mha.in_proj_weight
        self.out_proj = mha.out_proj
        self.num_heads = mha.num_heads

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        m = self.mha
        heads = m.num_heads
        bias = m.in_proj_bias.chunk(3) if m.in_proj_bias is not None else (None,) * 3
        q, k, v = (F.linear(x, w, b).unflatten(-1, (heads, -1)).transpose(1, 2)
                   for x, w, b in zip((query, key, value), m.in_proj_weight.chunk(3), bias))
        mask = None
        if key_padding_mask is not None:
            kpm = key_padding_mask[:, None, None, :]
            mask = (~kpm if kpm.dtype == torch.bool else kpm)
        if attn_mask is not None:
            am = ~attn_mask if attn_mask.dtype == torch.bool else attn_mask
            if mask is None:
                mask = am
            elif mask.dtype == torch.bool and am.dtype == torch.bool:
                mask = mask & am
            else:
                mask = _additive(mask, q.dtype) + _additive(am, q.dtype)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           is_causal=bool(is_causal and mask is None))
        return m.out_proj(y.transpose(1, 2).flatten(2)), None


def _additive(mask, dtype):
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, float('-inf'))
    return mask.to(dtype)


def make_exportable(model):
    """Swap (in place) the modules whose traced form would fix a shape; return model."""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.MultiheadAttention:
                full = f'{name}.{child_name}' if name else child_name
                setattr(module, child_name, ExportableMHA(child, full))
    return model


# -- the two graphs as modules ---------------------------------------------------------
class EncoderGraph(nn.Module):
    """Frame features + mask -> visual tokens, their mask and the initial state tensors."""

    def __init__(self, captioner):
        super().__init__()
        self.captioner = captioner
        self.spec = None

    def forward(self, feats, mask):
        key = self.captioner.feature_key
        memory, mem_mask = self.captioner.encode({key: feats, f'{key}_mask': mask})
        state = _prefill_caches(self.captioner.head.start(memory, mem_mask), self.captioner.head)
        _, leaves, self.spec = flatten_state(state)
        return (memory, mem_mask, *leaves)


class StepGraph(nn.Module):
    """Last token ``(B,)``, position ``()`` and the state -> logits ``(B, V)`` and state."""

    def __init__(self, head, spec):
        super().__init__()
        self.head, self.spec = head, spec

    def forward(self, token, position, *leaves):
        state = unflatten_state(self.spec, leaves)
        state['length'] = position
        logits = self.head.step(token, state)
        _, new_leaves, _ = flatten_state(state)
        return (logits, *new_leaves)


# -- export ------------------------------------------------------------------------------
def _check_exportable(captioner):
    """Stop early, naming the module, when a part has no ONNX form here."""
    head = captioner.head
    for call in ('start', 'step', 'reorder'):
        if not callable(getattr(head, call, None)):
            raise OnnxExportError(
                f'head ({type(head).__name__}) has no {call}(): only heads with the cached '
                'decoding interface (start/step/reorder, e.g. PrefixLMHead, '
                'TransformerDecoderHead) can be exported')
    for name, module in captioner.named_modules():
        if getattr(module, 'onnx_exportable', True) is False:
            raise OnnxExportError(f'{name} ({type(module).__name__}) cannot be exported to '
                                  'ONNX (it says so: onnx_exportable = False)')


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _try_export(module, args):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(module, args, io.BytesIO(), dynamo=False, opset_version=OPSET)


def _blame(graph_module, args, error):
    """``(name, module)`` of the deepest part that fails to export with the same error.

    Every submodule's inputs are recorded during one forward pass; the parts called with
    tensors only are then exported alone, deepest first. None when no single part does.
    """
    calls, hooks = {}, []

    def record(name):
        def hook(module, args, kwargs):
            calls.setdefault(name, (module, args, kwargs))
        return hook
    for name, module in graph_module.named_modules():
        if name:
            hooks.append(module.register_forward_pre_hook(record(name), with_kwargs=True))
    try:
        with torch.no_grad():
            graph_module(*args)
    except Exception:  # noqa: BLE001  (the forward may be what fails; keep the record)
        pass
    finally:
        for h in hooks:
            h.remove()
    for name in sorted(calls, key=lambda n: -n.count('.')):
        module, a, kw = calls[name]
        if kw or not a or not all(isinstance(x, torch.Tensor) for x in a):
            continue
        try:
            _try_export(module, a)
        except Exception as exc:  # noqa: BLE001  (any exporter failure)
            if type(exc) is type(error) and _first_line(exc) == _first_line(error):
                return name.removeprefix('captioner.'), module
    return None


def _export_graph(module, args, path, input_names, output_names, dynamic_axes, captioner):
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            torch.onnx.export(module, args, buffer, dynamo=False, opset_version=OPSET,
                              input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, do_constant_folding=True)
    except OnnxExportError:
        raise
    except Exception as exc:  # the exporter's errors have no common base class
        found = _blame(module, args, exc)
        where = (f'{found[0]} ({type(found[1]).__name__})' if found
                 else f'the {"decoder step" if isinstance(module, StepGraph) else "encoder"} '
                      f'of {type(captioner).__name__}')
        raise OnnxExportError(f'cannot export {where} to ONNX: {_first_line(exc)[:300]}') \
            from None
    data = buffer.getvalue()
    with open(path, 'wb') as f:
        f.write(data)
    return data


def _state_axes(names, leaves, batch='batch'):
    """Dynamic axes of the state tensors: batch first, then every growing/visual length."""
    axes = {}
    for name, leaf in zip(names, leaves):
        dims = {0: batch}
        if leaf.dim() == 5:  # self-attention keys and values (B, 2, heads, T, head dim)
            dims[3] = f'{name}_len'
        elif leaf.dim() == 4:  # keys or values (B, heads, T, head dim)
            dims[2] = f'{name}_len'
        elif leaf.dim() == 2:
            dims[1] = f'{name}_len'
        axes[name] = dims
    return axes


def _example(captioner, batch, frames):
    dim = captioner.visual_encoder.in_dim
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(batch, frames, dim, generator=g)
    mask = torch.ones(batch, frames, dtype=torch.bool)
    mask[-1, frames - 1:] = False  # a padded row, so masking stays in the graph
    return feats, mask


def export_graphs(captioner, out_dir, name, num_frames=15):
    """Write ``<name>.onnx`` and ``<name>.step.onnx``; return the state layout."""
    import onnx
    _check_exportable(captioner)
    captioner = make_exportable(copy.deepcopy(captioner).float().cpu().eval())
    head = captioner.head
    if not hasattr(captioner.visual_encoder, 'in_dim'):
        raise OnnxExportError(f'visual_encoder ({type(captioner.visual_encoder).__name__}) has '
                              'no in_dim: the exported encoder needs the feature width')
    os.makedirs(out_dir, exist_ok=True)
    enc = EncoderGraph(captioner)
    frames = max(2, int(num_frames))
    feats, mask = _example(captioner, 2, frames)
    with torch.no_grad():
        outs = enc(feats, mask)
    names, leaves, spec = flatten_state(
        _prefill_caches(head.start(outs[0], outs[1]), head))
    state_in = [f'in.{n}' for n in names]
    state_out = [f'out.{n}' for n in names]
    enc_path = osp.join(out_dir, name + '.onnx')
    enc_axes = dict(feats={0: 'batch', 1: 'frames'}, feats_mask={0: 'batch', 1: 'frames'},
                    memory={0: 'batch', 1: 'tokens'}, memory_mask={0: 'batch', 1: 'tokens'})
    enc_axes.update({f'out.{k}': v for k, v in _state_axes(names, leaves).items()})
    _export_graph(enc, (feats, mask), enc_path, ['feats', 'feats_mask'],
                  ['memory', 'memory_mask'] + state_out, enc_axes, captioner)
    # the step graph is traced one token into the caption, with a cache that is not empty
    state = unflatten_state(spec, [t.clone() for t in leaves])
    state['length'] = 0
    with torch.no_grad():
        head.step(torch.full((2,), 1, dtype=torch.long), state)
    _, leaves1, _ = flatten_state(state)
    step = StepGraph(head, spec)
    step_args = (torch.tensor([2, 3], dtype=torch.long), torch.tensor(1, dtype=torch.long),
                 *leaves1)
    step_axes = dict(token={0: 'batch'}, logits={0: 'batch'})
    step_axes.update({f'in.{k}': v for k, v in _state_axes(names, leaves1).items()})
    step_axes.update({f'out.{k}': {d: a + '_next' if d else a for d, a in v.items()}
                      for k, v in _state_axes(names, leaves1).items()})
    step_path = osp.join(out_dir, name + STEP_SUFFIX)
    _export_graph(step, step_args, step_path, ['token', 'position'] + state_in,
                  ['logits'] + state_out, step_axes, captioner)
    for path in (enc_path, step_path):
        onnx.checker.check_model(path, full_check=True)
    return dict(names=names, spec=_spec_to_json(spec))


def quantize_int8(src, dst):
    """Dynamic int8 quantisation of the MatMul/Gemm weights (linear layers and the tied
    output projection) of ``src`` into ``dst``; activations stay float.

    Weights are stored as uint8, as the activations: on CPUs without VNNI (AVX2 only)
    onnxruntime's uint8 x int8 kernel adds pairs of products in saturating int16, which
    int8 weights overflow. On such a CPU the demo student kept 210 of 240 greedy captions
    with int8 weights, 229 with uint8 (docs: model_zoo/README.md, "Quality on capdemo").
    Where the CPU has VNNI, the runner loads them as int8 (:func:`set_int8_weight_type`).
    """
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process is for static quantisation
    try:
        quantize_dynamic(src, dst, weight_type=QuantType.QUInt8,
                         op_types_to_quantize=['MatMul', 'Gemm'])
    finally:
        root.setLevel(level)
    import onnx
    onnx.checker.check_model(dst, full_check=True)


WEIGHT_TYPES = ('int8', 'uint8')


def set_int8_weight_type(model, weight_type):
    """Store the weights of ``model``'s ``MatMulInteger`` nodes as ``'int8'`` or ``'uint8'``.

    ``model`` is an ``onnx.ModelProto``, changed in place. Each weight tensor and its zero
    point move by 128 together, so ``weight - zero_point``, the value multiplied, stays
    the same: onnxruntime's integer product is the same, only its kernel changes. A
    tensor that anything else reads is left as it is, with its partner. Returns the
    number of tensors changed.
    """
    import numpy as np
    from onnx import TensorProto, numpy_helper
    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f'int8 weight type must be one of {WEIGHT_TYPES}, not {weight_type!r}')
    from_type = TensorProto.UINT8 if weight_type == 'int8' else TensorProto.INT8
    inits = {t.name: t for t in model.graph.initializer}
    pairs, other_uses = [], set()
    for node in model.graph.node:
        weight_slots = (1, 3) if node.op_type == 'MatMulInteger' else ()
        other_uses.update(n for i, n in enumerate(node.input) if i not in weight_slots)
        if len(weight_slots) and len(node.input) == 4:
            pairs.append((node.input[1], node.input[3]))
    other_uses.update(o.name for o in model.graph.output)
    pairs = [p for p in pairs
             if all(n in inits and inits[n].data_type == from_type and n not in other_uses
                    for n in p)]
    # a zero point shared with a weight that cannot move must not move either
    stuck = {n for node in model.graph.node if node.op_type == 'MatMulInteger'
             for n in node.input[1:4:2]} - {n for p in pairs for n in p}
    pairs = [p for p in pairs if not stuck & set(p)]
    changed = {n for p in pairs for n in p}
    shift = -128 if weight_type == 'int8' else 128
    dtype = np.int8 if weight_type == 'int8' else np.uint8
    for name in changed:
        values = numpy_helper.to_array(inits[name]).astype(np.int16) + shift
        inits[name].CopyFrom(numpy_helper.from_array(values.astype(dtype), name))
    return len(changed)


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


# -- the whole export --------------------------------------------------------------------
def _student_meta(path):
    """The json of an exported student (``tools/export_student.py``) named by ``path``, else {}."""
    from .export import FORMAT as STUDENT_FORMAT
    from .export import is_export
    if path is None or not is_export(path):
        return {}
    path = str(path)
    if osp.isdir(path):
        found = sorted(f for f in os.listdir(path) if f.endswith('.json'))
        path = osp.join(path, found[0]) if len(found) == 1 else ''
    js_path = osp.splitext(path)[0] + '.json'
    try:
        with open(js_path, encoding='utf-8') as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) and meta.get('format') == STUDENT_FORMAT else {}


def _load_source(config, checkpoint):
    """(captioner, model config dict, meta from an exported student or {}, Config or None)."""
    from mmengine.config import Config

    from capdistill.models.distillers import deployed_captioner_config
    from .export import _plain
    from .inference import init_captioner
    meta = _student_meta(checkpoint) or _student_meta(config)
    if meta:  # an exported student: its own json holds the config
        model = init_captioner(None, checkpoint if _student_meta(checkpoint) else config)
        return model, meta['model'], meta, None
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    model = init_captioner(cfg, checkpoint)
    model_cfg = deployed_captioner_config(cfg.model)
    model_cfg = _plain(model_cfg.to_dict() if hasattr(model_cfg, 'to_dict') else model_cfg)
    if hasattr(model, 'student_config'):
        model_cfg = _plain(model.student_config())
    return model, model_cfg, {}, cfg


def _decode_settings(model, meta):
    decode = dict(meta.get('decode') or {})
    decode.update({k: v for k, v in model.decode_cfg.items() if k not in decode})
    decode.pop('use_cache', None)  # the export always decodes through the cache
    decode.pop('max_len', None)
    return decode


def export_onnx(config, checkpoint, out_dir, name=None, int8=False, num_frames=None):
    """Export the deployed captioner of ``config`` + ``checkpoint`` to ``out_dir``.

    ``config``/``checkpoint``: a config and a full checkpoint, or an exported student
    (``tools/export_student.py``: its ``.safetensors``/``.json``, as either argument).
    Writes ``<name>.json``, ``<name>.onnx``, ``<name>.step.onnx`` and with ``int8`` also
    ``<name>.int8.{json,onnx,step.onnx}``. Returns the json path(s), fp32 first.
    Raises :class:`OnnxExportError` (one line, naming the module) for a model that has
    no ONNX form.
    """
    from .captioning import config_frame_encoder, config_num_frames
    model, model_cfg, meta, cfg = _load_source(config, checkpoint)
    if name is None:
        src = checkpoint if meta and checkpoint else config
        name = osp.splitext(osp.basename(str(src or 'student')))[0]
    return export_captioner(
        model, out_dir, name, int8=int8,
        num_frames=num_frames or meta.get('num_frames') or config_num_frames(cfg) or 15,
        tokenizer_cfg=model_cfg['tokenizer'],
        frame_encoder=meta.get('frame_encoder') if meta else config_frame_encoder(cfg),
        decode=_decode_settings(model, meta),
        source=dict(config=str(getattr(cfg, 'filename', '') or config or ''),
                    checkpoint=str(checkpoint or '')))


def export_captioner(model, out_dir, name, int8=False, num_frames=15, tokenizer_cfg=None,
                     frame_encoder=None, decode=None, source=None):
    """Export a built captioner (see :func:`export_onnx`); return the json path(s).

    ``tokenizer_cfg``: the tokenizer's config (default: its class with no arguments);
    a word vocabulary is written into the json either way.
    """
    from .export import _standalone_tokenizer
    tokenizer_cfg = dict(tokenizer_cfg or dict(type=type(model.tokenizer).__name__))
    layout = export_graphs(model, out_dir, name, num_frames=num_frames)
    max_frames = getattr(model.visual_encoder, 'max_frames', None)
    doc = dict(
        format=FORMAT, version=1,
        graphs=dict(encoder=name + '.onnx', step=name + STEP_SUFFIX),
        int8=False,
        model=dict(type=type(model).__name__, feature_key=model.feature_key,
                   in_dim=int(model.visual_encoder.in_dim), max_len=int(model.max_len),
                   vocab_size=int(model.head.vocab_size), head=type(model.head).__name__,
                   **({} if max_frames is None else dict(max_frames=int(max_frames)))),
        tokenizer=_standalone_tokenizer(tokenizer_cfg, model.tokenizer),
        feature_key=model.feature_key, feature_dim=int(model.visual_encoder.in_dim),
        frame_encoder=frame_encoder, num_frames=int(num_frames),
        decode=dict(decode if decode is not None else _decode_settings(model, {}),
                    max_len=int(model.max_len)),
        state=layout, opset=OPSET, source=source or {})
    paths = [_write_json(doc, out_dir, name)]
    if int8:
        q_name = name + INT8_TAG
        for src, dst in ((name + '.onnx', q_name + '.onnx'),
                         (name + STEP_SUFFIX, q_name + STEP_SUFFIX)):
            quantize_int8(osp.join(out_dir, src), osp.join(out_dir, dst))
        q_doc = dict(doc, int8=True,
                     graphs=dict(encoder=q_name + '.onnx', step=q_name + STEP_SUFFIX))
        paths.append(_write_json(q_doc, out_dir, q_name))
    return paths


def _write_json(doc, out_dir, name):
    doc = dict(doc, sha256={k: sha256(osp.join(out_dir, v)) for k, v in doc['graphs'].items()})
    path = osp.join(out_dir, name + '.json')
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(doc, f, indent=1)
    return path
