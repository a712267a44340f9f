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
                  is embedded (``tokenizer.words``), a compact one's token ids too
                  (``tokenizer.ids``), so no data set is needed.
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
import json
import os
import os.path as osp

from mmengine.config import Config
from mmengine.registry import DefaultScope

# The reading side lives below the model registry (a model config can load an export).
from capdistill.models.export_format import (FORMAT, VERSION, build_model, is_export,
                                             load_exported_student, read_export_json)
from capdistill.utils import (CheckpointError, load_full_checkpoint, load_matching_state,
                              state_dict_of, strip_student_prefix)

_DROP_KEYS = ('clip_embedding', 'init_cfg')  # files only needed to initialise training


def _plain(obj):
    """Config values as json-able plain Python."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items() if k not in _DROP_KEYS}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _standalone_tokenizer(cfg, tokenizer):
    """Replace a vocabulary file by the words themselves (a compact vocabulary by its ids)."""
    if callable(getattr(tokenizer, 'standalone_config', None)):
        return tokenizer.standalone_config()
    if cfg.get('type') == 'WordTokenizer' and hasattr(tokenizer, 'itos'):
        words = list(tokenizer.itos[len(getattr(tokenizer, 'specials', ())):])
        return dict(type='WordTokenizer', words=words)
    return dict(cfg)


def _feature_key(cfg, model):
    return getattr(model, 'feature_key', None) or 'feats'


def infer_frame_encoder(cfg, feature_key='feats'):
    """The frame encoder config a run's features came from, or None.

    The config's ``frame_encoder = dict(type=...)`` entry, else the preset of
    ``tools/extract_features.py`` whose output folder the run reads its ``feature_key``
    features from (``visual/clip_b32/frame_feature`` -> the ``clip-b32`` preset).
    """
    from capdistill.datasets.extraction import ENCODER_PRESETS
    enc = cfg.get('frame_encoder')
    if enc:
        return _plain(enc.to_dict() if hasattr(enc, 'to_dict') else dict(enc))
    by_folder = {folder: dict(preset) for preset, folder in ENCODER_PRESETS.values()}
    for loader in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        dirs = ((cfg.get(loader) or {}).get('dataset') or {}).get('feature_dirs') or {}
        parts = str(dirs.get(feature_key, '')).replace('\\', '/').rstrip('/').split('/')
        if len(parts) >= 2 and parts[-1] == 'frame_feature' and parts[-2] in by_folder:
            return by_folder[parts[-2]]
    return None


def _encoder_dim(encoder_cfg):
    """The feature width of an encoder config, or None when it cannot be built here
    (e.g. its weight file is on another machine)."""
    if not encoder_cfg:
        return None
    from capdistill.registry import BACKBONES
    try:
        with DefaultScope.overwrite_default_scope('capdistill'):
            return int(BACKBONES.build(dict(encoder_cfg)).feature_dim)
    except (FileNotFoundError, ValueError, CheckpointError, ImportError):
        return None


def inference_settings(cfg, model, frame_encoder=None):
    """The json fields an export carries for inference (see the module docstring)."""
    from .captioning import config_num_frames
    key = _feature_key(cfg, model)
    feature_dim = getattr(getattr(model, 'visual_encoder', None), 'in_dim', None)
    if isinstance(frame_encoder, dict):
        frame_encoder = dict(frame_encoder)
    elif frame_encoder is not None:
        raise TypeError(f'frame_encoder must be a dict(type=...) config, got {frame_encoder!r}')
    given = frame_encoder is not None or bool(cfg.get('frame_encoder'))
    if frame_encoder is None:
        frame_encoder = infer_frame_encoder(cfg, key)
    dim = _encoder_dim(frame_encoder)
    if dim is not None and feature_dim is not None and dim != feature_dim:
        if given:
            raise CheckpointError(
                f'frame encoder {frame_encoder} gives {dim}-d features, but the student reads '
                f'{feature_dim}-d ones; name the encoder its features were extracted with')
        frame_encoder = None  # a folder name that only looks like a preset's
    decode = dict(getattr(model, 'decode_cfg', None) or {})
    if getattr(model, 'max_len', None) is not None:
        decode['max_len'] = int(model.max_len)
    return dict(frame_encoder=frame_encoder, feature_key=key,
                feature_dim=int(feature_dim) if feature_dim is not None else None,
                num_frames=config_num_frames(cfg), decode=_plain(decode))


def export_student(config, checkpoint, out_dir, name=None, frame_encoder=None):
    """Write the deployed student of ``config`` + ``checkpoint`` to ``out_dir``.

    Returns the paths ``(safetensors, json)``. A distillation config exports its
    student (teacher and connectors are dropped), an SCST config its captioner; a model
    with ``student_state_dict``/``student_config`` (the shared-weight SFTCap) exports its
    student path only.
    ``frame_encoder`` (a ``dict(type=...)``) names the encoder videos go through when the
    config does not (see :func:`infer_frame_encoder`); the frame count and decoding
    settings come from the config.
    """
    from safetensors.torch import save_file

    from capdistill.models.distillers import deployed_captioner_config
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    model_cfg = deployed_captioner_config(cfg.model)
    model_cfg = _plain(model_cfg.to_dict() if hasattr(model_cfg, 'to_dict') else model_cfg)
    model = build_model(model_cfg)
    state = strip_student_prefix(state_dict_of(load_full_checkpoint(checkpoint)))
    load_matching_state(model, state, f'Checkpoint {checkpoint}')
    if hasattr(model, 'student_config') and hasattr(model, 'student_state_dict'):
        weights = model.student_state_dict()
        model_cfg = _plain(model.student_config())
    else:
        weights = model.state_dict()
    model_cfg['tokenizer'] = _standalone_tokenizer(model_cfg['tokenizer'], model.tokenizer)
    settings = inference_settings(cfg, model, frame_encoder)  # may refuse: before writing
    name = name or osp.splitext(osp.basename(cfg.filename or 'student'))[0]
    os.makedirs(out_dir, exist_ok=True)
    st_path, js_path = osp.join(out_dir, name + '.safetensors'), osp.join(out_dir, name + '.json')
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in weights.items()}
    save_file(tensors, st_path, metadata=dict(format=FORMAT))
    meta = dict(format=FORMAT, version=VERSION, model=model_cfg,
                **settings,
                source=dict(config=str(getattr(cfg, 'filename', '') or ''),
                            checkpoint=str(checkpoint)),
                params=int(sum(v.numel() for v in tensors.values())))
    with open(js_path, 'w') as f:
        json.dump(meta, f, indent=1)
    return st_path, js_path


__all__ = ['export_student', 'load_exported_student', 'is_export', 'read_export_json',
           'infer_frame_encoder', 'inference_settings', 'FORMAT', 'VERSION']
