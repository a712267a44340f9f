"""Exported students: safetensors weights plus a json model config, loaded without
unpickling anything.

Layout (``tools/export_student.py CONFIG CHECKPOINT --out DIR``)::

    DIR/<name>.safetensors   the deployed student's weights only
    DIR/<name>.json          the json below

The json (``version`` 2) carries everything inference needs, so the pair captions a
video with no config and no other argument:

``format``        ``"capdistill-student"``.
``version``       2 (version 1 files had no ``frame_encoder``/``num_frames``/``decode``).
``model``         the captioner config (``MODELS`` registry); a word tokenizer's vocabulary
                  is embedded (``tokenizer.words``), so no data set is needed.
``frame_encoder`` the ``BACKBONES`` config that turns ``(T, H, W, 3)`` uint8 RGB frames into
                  the features the model was trained on (e.g.
                  ``{"type": "OpenCLIPVisual", "model_name": "ViT-B-32", "checkpoint":
                  "model_zoo/clip_model/ViT-B-32.pt"}``); weight paths are as written in the
                  config (relative ones are relative to the working directory). ``null`` when
                  neither the config nor the export command named one: such an export
                  captions feature files only, videos need an encoder argument.
``feature_key``   the input name the captioner reads (``"feats"``).
``feature_dim``   the width of one frame feature (the encoder's output, the model's input).
``num_frames``    frames sampled uniformly over each video, as in the run's test pipeline.
``decode``        caption decoding settings used at test time: ``strategy`` (``"greedy"`` or
                  ``"beam"``), ``beam_size`` when beam, ``max_len`` (tokens) and the rest of
                  the captioner's ``decode`` dict.
``source``        ``{"config": ..., "checkpoint": ...}`` the export was made from.
``params``        number of exported parameters.

No teacher, connector or optimizer state is written.
"""
import glob
import json
import os
import os.path as osp

from mmengine.config import Config
from mmengine.registry import DefaultScope

from capdistill.registry import MODELS
from capdistill.utils import (CheckpointError, load_full_checkpoint, load_matching_state,
                              state_dict_of)

FORMAT = 'capdistill-student'
_DROP_KEYS = ('clip_embedding', 'init_cfg')  # files only needed to initialise training


def _plain(obj):
    """Config values as json-able plain Python."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items() if k not in _DROP_KEYS}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _standalone_tokenizer(cfg, tokenizer):
    """Replace a vocabulary file by the words themselves."""
    if cfg.get('type') == 'WordTokenizer' and hasattr(tokenizer, 'itos'):
        words = list(tokenizer.itos[len(getattr(tokenizer, 'specials', ())):])
        return dict(type='WordTokenizer', words=words)
    return dict(cfg)


def _build(model_cfg):
    with DefaultScope.overwrite_default_scope('capdistill'):
        return MODELS.build(model_cfg)


def export_student(config, checkpoint, out_dir, name=None):
    """Write the deployed student of ``config`` + ``checkpoint`` to ``out_dir``.

    Returns the paths ``(safetensors, json)``. A distillation config exports its
    student (teacher and connectors are dropped); a model with ``student_state_dict``/
    ``student_config`` (the shared-weight SFTCap) exports its student path only.
    """
    from safetensors.torch import save_file
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    model_cfg = cfg.model
    if model_cfg.get('type') == 'DistillAlgorithm':
        model_cfg = model_cfg.student
    model_cfg = _plain(model_cfg.to_dict() if hasattr(model_cfg, 'to_dict') else model_cfg)
    model = _build(model_cfg)
    state = state_dict_of(load_full_checkpoint(checkpoint))
    if any(k.startswith('student.') for k in state):
        state = {k[len('student.'):]: v for k, v in state.items() if k.startswith('student.')}
    load_matching_state(model, state, f'Checkpoint {checkpoint}')
    if hasattr(model, 'student_config') and hasattr(model, 'student_state_dict'):
        weights = model.student_state_dict()
        model_cfg = _plain(model.student_config())
    else:
        weights = model.state_dict()
    model_cfg['tokenizer'] = _standalone_tokenizer(model_cfg['tokenizer'], model.tokenizer)
    name = name or osp.splitext(osp.basename(cfg.filename or 'student'))[0]
    os.makedirs(out_dir, exist_ok=True)
    st_path, js_path = osp.join(out_dir, name + '.safetensors'), osp.join(out_dir, name + '.json')
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in weights.items()}
    save_file(tensors, st_path, metadata=dict(format=FORMAT))
    meta = dict(format=FORMAT, version=1, model=model_cfg,
                source=dict(config=str(getattr(cfg, 'filename', '') or ''),
                            checkpoint=str(checkpoint)),
                params=int(sum(v.numel() for v in tensors.values())))
    with open(js_path, 'w') as f:
        json.dump(meta, f, indent=1)
    return st_path, js_path


def _locate(path):
    """``(safetensors, json)`` for a folder, either file, or a shared stem."""
    path = str(path)
    if osp.isdir(path):
        found = sorted(glob.glob(osp.join(path, '*.safetensors')))
        if len(found) != 1:
            raise CheckpointError(f'{path} holds {len(found)} .safetensors files; give the '
                                  'file itself.')
        path = found[0]
    stem = osp.splitext(path)[0] if path.endswith(('.safetensors', '.json')) else path
    st_path, js_path = stem + '.safetensors', stem + '.json'
    for p, what in ((st_path, 'weights'), (js_path, 'model config')):
        if not osp.isfile(p):
            raise CheckpointError(f'Exported student {what} not found: {p} (an export is a '
                                  '<name>.safetensors plus <name>.json pair).')
    return st_path, js_path


def load_exported_student(path, device='cpu'):
    """Build an exported student from its json and load its safetensors weights.

    ``path``: the export folder, the ``.safetensors`` or the ``.json`` file. Nothing is
    unpickled (safetensors only). Returns the captioner in eval mode.
    """
    from safetensors.torch import load_file
    st_path, js_path = _locate(path)
    with open(js_path) as f:
        meta = json.load(f)
    if meta.get('format') != FORMAT:
        raise CheckpointError(f'{js_path} is not a capdistill student export '
                              f'(format={meta.get("format")!r}).')
    model = _build(meta['model'])
    load_matching_state(model, load_file(st_path), f'Exported student {st_path}')
    return model.to(device).eval()


def is_export(path):
    """Whether ``path`` names an exported student (folder with one, or either file)."""
    if path is None:
        return False
    path = str(path)
    if path.endswith('.safetensors'):
        return True
    if path.endswith('.json') and osp.isfile(path):
        return True
    return osp.isdir(path) and bool(glob.glob(osp.join(path, '*.safetensors')))


__all__ = ['export_student', 'load_exported_student', 'is_export', 'FORMAT']
