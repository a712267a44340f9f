"""Captioning with an ONNX export (``tools/deploy.py``) on onnxruntime (CPU).

:class:`OnnxCaptioner` behaves like a :class:`~capdistill.models.captioners.Captioner` at
test time (``generate``, ``predict``, ``tokenizer``, ``feature_key``, ``frame_encoder``,
``num_frames``), so :func:`capdistill.apis.caption_video`, ``tools/caption_video.py`` and
``tools/test.py`` (``dict(type='OnnxStudent', path=...)``) take it like any checkpoint.

The search is PyTorch's own: ``generate`` is :meth:`Captioner.generate`, which runs
:func:`capdistill.models.captioners.decoding.decode` over :class:`OnnxHead`, a head whose
``start``/``step``/``reorder`` are the exported graphs (the decoder step takes and
returns the key/value cache) and a row selection of the cache. Greedy and beam search,
length penalty, ``min_len``, banned ids and n-gram blocking are therefore the same code
for both back-ends; only the reference's uncached loop (``use_cache=False``) has no ONNX
form.
"""
import hashlib
import json
import os
import os.path as osp
import types

import numpy as np
import torch
from mmengine.model import BaseModel

from capdistill.models.backbones.feature_encoders import too_many_frames
from capdistill.models.captioners.decoding import check_decode_settings
from capdistill.registry import MODELS
from capdistill.utils import CheckpointError
from capdistill.utils.requirements import ModelConfigError
from .onnx_export import (FORMAT, STEP_SUFFIX, WEIGHT_TYPES, set_int8_weight_type,
                          spec_from_json)

__all__ = ['OnnxCaptioner', 'OnnxHead', 'OnnxStudent', 'init_onnx_captioner', 'is_onnx_export',
           'locate_onnx_export', 'int8_weight_type', 'cpu_has_vnni', 'backend_runners']


def locate_onnx_export(path):
    """The export json for a folder, the json itself or either ``.onnx`` graph."""
    path = str(path)
    if osp.isdir(path):
        found = sorted(f for f in os.listdir(path) if f.endswith('.json')
                       and _is_onnx_json(osp.join(path, f)))
        if len(found) != 1:
            raise CheckpointError(f'{path} holds {len(found)} ONNX export json files; give '
                                  'the .json or .onnx file itself.')
        return osp.join(path, found[0])
    if path.endswith(STEP_SUFFIX):
        path = path[:-len(STEP_SUFFIX)] + '.json'
    elif path.endswith('.onnx'):
        path = path[:-len('.onnx')] + '.json'
    if not osp.isfile(path):
        raise CheckpointError(f'ONNX export json not found: {path} (tools/deploy.py writes '
                              '<name>.json beside <name>.onnx and <name>.step.onnx).')
    if not _is_onnx_json(path):
        raise CheckpointError(f'{path} is not a capdistill ONNX export (format must be '
                              f'{FORMAT!r}); make one with tools/deploy.py.')
    return path


def _is_onnx_json(path):
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f).get('format') == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def is_onnx_export(path):
    """Whether ``path`` names an ONNX export (an ``.onnx`` graph or its json/folder)."""
    if path is None:
        return False
    path = str(path)
    if path.endswith('.onnx'):
        return True
    if path.endswith('.json'):
        return _is_onnx_json(path)
    return osp.isdir(path) and any(f.endswith('.onnx') for f in os.listdir(path))


def cpu_has_vnni(capabilities=None):
    """Whether this CPU multiplies uint8 by int8 into int32 in one instruction (x86
    AVX-512 VNNI or AVX-VNNI), read from ``capabilities`` (default:
    ``torch.cpu.get_capabilities()``); False where this torch cannot tell."""
    if capabilities is None:
        get = getattr(torch.cpu, 'get_capabilities', None)  # recent torch only (2.13 has it)
        capabilities = get() if get is not None else {}
    return bool(capabilities.get('avx512_vnni') or capabilities.get('avx_vnni'))


def int8_weight_type(choice='auto'):
    """The weight type an int8 export is run with: ``choice``, or for ``'auto'`` int8 on a
    CPU with VNNI (its kernel multiplies them directly: up to 1.5x faster than uint8
    weights there, model_zoo/README.md) and uint8 elsewhere (without VNNI, int8 weights
    overflow a saturating sum)."""
    if choice == 'auto':
        return 'int8' if cpu_has_vnni() else 'uint8'
    if choice not in WEIGHT_TYPES:
        raise ValueError(f"int8_weights must be 'auto' or one of {WEIGHT_TYPES}, "
                         f'not {choice!r}')
    return choice


def _session(path, threads, weight_type=None, digest=None, json_path=None):
    """An onnxruntime session of the graph at ``path``, checked against the ``digest``
    (sha256) its export json records; with ``weight_type``, its integer weights are
    loaded as that type (:func:`set_int8_weight_type`: the same values)."""
    import onnxruntime as ort
    if not osp.isfile(path):
        raise CheckpointError(f'ONNX graph not found: {path} (the export json names it; keep '
                              'the exported files together).')
    with open(path, 'rb') as f:
        graph = f.read()
    redo = 'export the model again (tools/deploy.py)'
    if digest is not None and hashlib.sha256(graph).hexdigest() != digest:
        raise CheckpointError(f'{path} is not the graph {json_path} was exported with (its '
                              f'sha256 differs): the file is damaged or was replaced (a graph '
                              f'changed on purpose needs its new sha256 there); {redo}.')
    opts = ort.SessionOptions()
    # the same number of threads as torch, so that back-ends compare on equal terms
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # a failed run raises, and the runner turns that into one line; onnxruntime's own
    # log of the same failure would print it twice
    opts.log_severity_level = 4
    from google.protobuf.message import DecodeError
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidProtobuf
    try:
        if weight_type is not None:
            import onnx
            model = onnx.load_from_string(graph)
            if set_int8_weight_type(model, weight_type):
                graph = model.SerializeToString()
        return ort.InferenceSession(graph, sess_options=opts,
                                    providers=['CPUExecutionProvider'])
    except (DecodeError, InvalidProtobuf) as exc:
        raise CheckpointError(f'{path} is not a readable ONNX graph ({type(exc).__name__}); '
                              f'{redo}.') from None


class OnnxHead:
    """The decoder step graph behind the ``start``/``step``/``reorder`` head interface.

    The state is the flat list of cache tensors (numpy arrays) and the position; the
    encoder graph computes the initial one, which :meth:`start` hands out for the
    visual tokens it was computed with.
    """

    def __init__(self, session, names, vocab_size):
        self.session = session
        self.names = list(names)
        self.vocab_size = int(vocab_size)
        self.inputs = [f'in.{n}' for n in self.names]
        self._pending = None

    def prime(self, memory, leaves):
        """Remember the initial state computed for ``memory`` by the encoder graph."""
        self._pending = (memory, leaves)

    def start(self, memory, mem_mask):
        if self._pending is None or self._pending[0] is not memory:
            raise RuntimeError('OnnxHead.start() needs the visual tokens from '
                               'OnnxCaptioner.encode() (the encoder graph makes the state)')
        leaves = self._pending[1]
        self._pending = None
        return dict(leaves=leaves, length=0)

    def step(self, tokens, state):
        feed = dict(zip(self.inputs, state['leaves']))
        feed['token'] = np.ascontiguousarray(tokens.detach().cpu().numpy(), dtype=np.int64)
        feed['position'] = np.array(state['length'], dtype=np.int64)
        logits, *leaves = self.session.run(None, feed)
        state['leaves'] = leaves
        state['length'] += 1
        return torch.from_numpy(logits)

    @staticmethod
    def reorder(state, index):
        idx = index.detach().cpu().numpy()
        state['leaves'] = [np.take(a, idx, axis=0) for a in state['leaves']]
        return state

    def __call__(self, *args, **kwargs):
        raise ValueError('an ONNX export decodes through its key/value cache only; '
                         'use_cache=False (the reference loop) is PyTorch-only')


class OnnxCaptioner:
    """An ONNX export run on onnxruntime, with the captioner's test-time interface.

    Args:
        path: the export's ``.json``, its ``.onnx``/``.step.onnx`` graph or its folder.
        threads (int, optional): onnxruntime intra-op threads (default: torch's).
        int8_weights (str): for an int8 export, the type its weights are multiplied as:
            ``'auto'`` (int8 on CPUs with VNNI, else uint8; :func:`int8_weight_type`),
            ``'int8'`` or ``'uint8'``. Either holds the same values, so the captions are
            the same wherever the kernel's integer sum is exact.
        decode (dict, optional): decoding settings over the export's own (e.g.
            ``dict(strategy='beam', beam_size=5)``).
    """

    def __init__(self, path, threads=None, int8_weights='auto', decode=None):
        from capdistill.registry import TOKENIZERS
        self.json_path = locate_onnx_export(path)
        with open(self.json_path, encoding='utf-8') as f:
            meta = json.load(f)
        self.meta = meta
        folder = osp.dirname(self.json_path)
        graphs = meta['graphs']
        self.int8 = bool(meta.get('int8'))
        weight_type = int8_weight_type(int8_weights)
        #: what an int8 export's weights are multiplied as here (None: a float export)
        self.int8_weights = weight_type if self.int8 else None
        digests = meta.get('sha256') or {}
        self.encoder_session, step_session = (
            _session(osp.join(folder, graphs[part]), threads, self.int8_weights,
                     digests.get(part), self.json_path) for part in ('encoder', 'step'))
        model = meta['model']
        self.tokenizer = TOKENIZERS.build(dict(meta['tokenizer']))
        self.feature_key = model['feature_key']
        saved = dict(meta.get('decode') or {})
        self.max_len = int(saved.pop('max_len', model['max_len']))
        self.decode_cfg = dict(strategy='greedy', use_cache=True, ban_special=True)
        check_decode_settings(saved, self.tokenizer.vocab_size, source=self.json_path)
        check_decode_settings(decode or {}, self.tokenizer.vocab_size, path='model.decode')
        self.decode_cfg.update(saved, **(decode or {}))
        self.head = OnnxHead(step_session, meta['state']['names'], model['vocab_size'])
        self.spec = spec_from_json(meta['state']['spec'])
        # what caption_video reads off a captioner
        self.visual_encoder = types.SimpleNamespace(in_dim=int(model['in_dim']),
                                                    max_frames=model.get('max_frames'))
        self.frame_encoder = meta.get('frame_encoder')
        self.num_frames = meta.get('num_frames')
        self.training = False

    # -- the parts of nn.Module that callers use ----------------------------------------
    def parameters(self):
        return iter(())

    def eval(self):
        return self

    def to(self, *args, **kwargs):
        return self

    # -- captioning -------------------------------------------------------------------
    def encode(self, inputs):
        """Visual tokens and mask ``(B, N, E)``/``(B, N)``; primes the head's state."""
        feats = inputs[self.feature_key]
        mask = inputs[f'{self.feature_key}_mask']
        feed = dict(feats=np.ascontiguousarray(feats.detach().cpu().float().numpy()),
                    feats_mask=np.ascontiguousarray(mask.detach().cpu().numpy(), dtype=bool))
        if feed['feats'].shape[-1] != self.visual_encoder.in_dim:
            raise ModelConfigError(f'the ONNX export reads {self.visual_encoder.in_dim}-dim '
                                   f'features, got {feed["feats"].shape[-1]}; use the frame '
                                   'encoder it was trained on')
        limit = self.visual_encoder.max_frames
        if limit is not None and feed['feats'].shape[1] > limit:
            raise ModelConfigError(too_many_frames('the ONNX export', limit,
                                                   feed['feats'].shape[1]))
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail
        try:
            memory, mem_mask, *leaves = self.encoder_session.run(None, feed)
        except Fail as exc:
            raise ModelConfigError(self._encoder_failed(feed['feats'].shape, exc)) from None
        memory, mem_mask = torch.from_numpy(memory), torch.from_numpy(mem_mask)
        self.head.prime(memory, leaves)
        return memory, mem_mask

    def _encoder_failed(self, shape, exc):
        """The one-line message for features the encoder graph refused."""
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        # onnxruntime's message ends in the failed check's own words
        reason = reason.split('Status Message: ')[-1].split(' was false. ')[-1][:200]
        if self.visual_encoder.max_frames is None:
            todo = ('if the video has more frames than the model has positions for, pass '
                    'fewer (--num-frames); exported again with tools/deploy.py, its json '
                    'records that limit (model.max_frames) and the error names it')
        else:
            todo = 'check the features against the export json (feature_key, in_dim)'
        return (f'the ONNX export {self.json_path} could not encode features of shape '
                f'{tuple(shape)} (onnxruntime: {reason}); {todo}')

    def generate(self, inputs, **decode):
        """Generated ids ``(B, <=max_len+1)``: :meth:`Captioner.generate` over the graphs."""
        from capdistill.models.captioners.captioner import Captioner
        if decode.get('use_cache', self.decode_cfg.get('use_cache', True)) is False:
            self.head()  # one clear error
        return Captioner.generate(self, inputs, **decode)

    def predict(self, inputs, data_samples=None):
        from capdistill.models.captioners.captioner import Captioner
        return Captioner.predict(self, inputs, data_samples)


@MODELS.register_module(name='OnnxStudent')
class OnnxStudent(BaseModel):
    """An ONNX export as a model for the Runner (``tools/test.py``): ``predict`` only.

    ``dict(type='OnnxStudent', path='DIR/x.json')`` with ``load_from = None``; the
    captions come from onnxruntime, the batching from the usual data preprocessor.
    """

    def __init__(self, path, threads=None, int8_weights='auto', decode=None,
                 data_preprocessor=dict(type='CaptionDataPreprocessor')):
        super().__init__(data_preprocessor=data_preprocessor)
        self.onnx = OnnxCaptioner(path, threads=threads, int8_weights=int8_weights,
                                  decode=decode)
        self.tokenizer = self.onnx.tokenizer

    def forward(self, inputs, data_samples=None, mode='predict'):
        if mode != 'predict':
            raise ValueError(f'an ONNX export only predicts (mode={mode!r}); train the '
                             'PyTorch model instead')
        return self.onnx.predict(inputs, data_samples)

    def generate(self, inputs, **decode):
        return self.onnx.generate(inputs, **decode)


def init_onnx_captioner(path, encoder=None, threads=None, int8_weights='auto'):
    """:class:`OnnxCaptioner` plus a built frame encoder, ready for ``caption_video``.

    ``encoder`` (a module or ``dict(type=...)``) overrides the export json's
    ``frame_encoder``; without either, only feature files can be captioned.
    """
    from .captioning import build_frame_encoder
    model = OnnxCaptioner(path, threads=threads, int8_weights=int8_weights)
    model.frame_encoder = build_frame_encoder(encoder or model.frame_encoder)
    return model


#: ``onnx-int8`` multiplies the int8 export's weights as this CPU suits
#: (:func:`int8_weight_type`); the last two force a weight type, to compare them
INT8_BACKENDS = {'onnx-int8': 'auto', 'onnx-int8-int8w': 'int8', 'onnx-int8-uint8w': 'uint8'}
BACKENDS = ('torch', 'onnx', *INT8_BACKENDS)


def backend_runners(model, workdir, backends, num_frames, threads=None):
    """``{name: runner}`` for ``'torch'`` (``model`` itself) and the ``backends`` asked for
    (:data:`BACKENDS`): ``model`` exported to ``workdir``, fp32 and, for the int8 back-ends,
    dynamic int8 with the weight type each names."""
    from .onnx_export import export_captioner
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        raise ValueError(f'unknown back-end(s) {unknown}; choose from {list(BACKENDS)}')
    runners = dict(torch=model)
    int8 = {b: w for b, w in INT8_BACKENDS.items() if b in backends}
    if 'onnx' in backends or int8:
        paths = export_captioner(model, workdir, 'model', int8=bool(int8),
                                 num_frames=num_frames)
        if 'onnx' in backends:
            runners['onnx'] = OnnxCaptioner(paths[0], threads=threads)
        for name, weights in int8.items():
            runners[name] = OnnxCaptioner(paths[1], threads=threads, int8_weights=weights)
    return runners


def compare_backends(model, batches, backends=BACKENDS, beam_size=5, repeats=3, warmup=1,
                     workdir=None):
    """Latency per video of PyTorch eager and onnxruntime fp32/int8, side by side.

    Args:
        model: a built captioner (PyTorch); it is exported to ``workdir`` (default a
            temporary folder) for the onnx back-ends.
        batches (dict): batch size -> inputs dict (as ``Captioner.generate`` takes).
        backends: any of :data:`BACKENDS`: ``'torch'``, ``'onnx'`` (fp32), ``'onnx-int8'``
            and the int8 export with its weights multiplied as int8 or uint8 whatever the
            CPU (``'onnx-int8-int8w'``, ``'onnx-int8-uint8w'``).

    Returns:
        ``{bs: {strategy: {backend: seconds per video, f'{backend}/torch speedup':
        ratio, f'{backend} same tokens': fraction of rows identical to torch}}}`` with
        strategy ``'greedy'`` and ``f'beam{beam_size}'``; back-ends run alternately for
        each setting, so machine load affects them alike.
    """
    import tempfile

    from capdistill.evaluation.cost import latency_per_video
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix='capdistill_onnx_')
        workdir = tmp.name
    try:
        frames = next(iter(batches.values()))[model.feature_key].shape[1]
        runners = backend_runners(model, workdir, backends, frames)
        results = {}
        for bs, inputs in batches.items():
            results[bs] = {}
            for label, decode in (('greedy', dict(strategy='greedy')),
                                  (f'beam{beam_size}', dict(strategy='beam',
                                                            beam_size=beam_size))):
                reference = model.generate(inputs, **decode)
                row = {}
                for name in ('torch',) + tuple(b for b in backends if b != 'torch'):
                    runner = runners[name]
                    row[name] = latency_per_video(runner, inputs, repeats, warmup, **decode)
                    if name != 'torch':
                        row[f'{name}/torch speedup'] = row['torch'] / row[name]
                        ids = runner.generate(inputs, **decode)
                        same = _same_rows(ids, reference, model.tokenizer.eos_id)
                        row[f'{name} same tokens'] = float(same.float().mean())
                results[bs][label] = row
        return results
    finally:
        if tmp is not None:
            tmp.cleanup()


def _same_rows(a, b, eos_id):
    """Which rows of two EOS-padded id matrices hold the same caption."""
    width = max(a.shape[1], b.shape[1])
    pad = [torch.nn.functional.pad(x, (0, width - x.shape[1]), value=eos_id) for x in (a, b)]
    return (pad[0] == pad[1]).all(1)


def format_backends(results):
    """:func:`compare_backends` results as text lines (ms per video and ratios)."""
    lines = []
    for bs, rows in results.items():
        for label, row in rows.items():
            parts = [f'batch {bs:>3} {label:>6}:']
            for key, value in row.items():
                if key.endswith('speedup'):
                    parts.append(f'{key.split("/")[0]} {value:.2f}x')
                elif key.endswith('same tokens'):
                    parts.append(f'({key.split(" ")[0]} same tokens {100 * value:.0f}%)')
                else:
                    parts.append(f'{key}={value * 1e3:.2f}ms')
            lines.append('  ' + ' '.join(parts))
    return lines
