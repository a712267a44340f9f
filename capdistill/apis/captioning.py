"""Captioning one's own videos (or precomputed frame features) with a trained captioner.

A captioner reads frame features, so a raw video goes through a frame encoder first.
It must be the encoder the model was trained on (the same features the dataset's
``visual/<encoder>/frame_feature`` files hold): the demo student reads
``PixelGridEncoder(grid=8)`` features (192-d), the demo teacher ``grid=16`` (768-d);
students trained on CLIP features need the CLIP weights under ``model_zoo/`` (see
``model_zoo/README.md``), since nothing is downloaded at run time.

The encoder is found, in this order: the ``encoder`` argument (a module or a config
dict), a ``frame_encoder = dict(type=...)`` entry of the model's config (pass
``config=`` or use :func:`init_video_captioner`).
"""
import os
import os.path as osp
import time

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from capdistill.datasets.transforms.loading import uniform_indices
from capdistill.datasets.video_io import read_video_frames
from capdistill.utils.values import check_int

__all__ = ['caption_video', 'init_video_captioner', 'build_frame_encoder',
           'config_frame_encoder', 'config_num_frames', 'CaptionInputError']

DEFAULT_NUM_FRAMES = 15


class CaptionInputError(ValueError):
    """Input to :func:`caption_video` that cannot be captioned as given (one line)."""


def _as_config(config):
    if config is None or isinstance(config, Config):
        return config
    if isinstance(config, dict):
        return Config(config)
    return Config.fromfile(str(config))


def config_frame_encoder(config):
    """The ``frame_encoder`` config dict of a model config, or None."""
    cfg = _as_config(config)
    if cfg is None:
        return None
    enc = cfg.get('frame_encoder')
    return enc.to_dict() if hasattr(enc, 'to_dict') else enc


def config_num_frames(config):
    """Frames per video the config's test pipeline samples (None when it says nothing)."""
    cfg = _as_config(config)
    if cfg is None:
        return None
    for loader in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        pipeline = ((cfg.get(loader) or {}).get('dataset') or {}).get('pipeline') or []
        for step in pipeline:
            if step.get('type') == 'LoadFrameFeatures' and step.get('num_frames'):
                return int(step['num_frames'])
    return None


def build_frame_encoder(encoder):
    """A frame encoder module from a module or a ``dict(type=...)`` config."""
    if encoder is None or hasattr(encoder, 'encode_frames'):
        return encoder
    if not isinstance(encoder, dict) or 'type' not in encoder:
        raise CaptionInputError(f'a frame encoder must be a module with encode_frames() or a '
                                f"dict(type=...) config, got {encoder!r}")
    from capdistill.registry import BACKBONES
    with DefaultScope.overwrite_default_scope('capdistill'):
        return BACKBONES.build(dict(encoder)).eval()


def init_video_captioner(config, checkpoint=None, device='cpu', encoder=None):
    """:func:`init_captioner` plus what videos need: the frame encoder and frame count.

    ``config`` may be an exported student itself (its ``.json``, ``.safetensors`` or
    folder) with ``checkpoint=None``; with an exported student the export's json gives the
    frame encoder and frame count, else the config's ``frame_encoder`` and test pipeline.
    ``encoder`` overrides either; the result carries ``frame_encoder`` (a module, or None
    when nothing names one) and ``num_frames``.
    """
    from .export import is_export
    from .inference import init_captioner
    exported = is_export(checkpoint) or (checkpoint is None and is_export(config))
    cfg = None if exported and (config is None or is_export(config)) else _as_config(config)
    model = init_captioner(cfg if cfg is not None else config, checkpoint, device=device)
    if encoder is None:
        encoder = getattr(model, 'frame_encoder', None) or config_frame_encoder(cfg)
    model.frame_encoder = build_frame_encoder(encoder)
    model.num_frames = getattr(model, 'num_frames', None) or config_num_frames(cfg)
    return model


def _expected_dim(model):
    return getattr(getattr(model, 'visual_encoder', None), 'in_dim', None)


def _is_features_file(item):
    return isinstance(item, (str, os.PathLike)) and str(item).lower().endswith('.npy')


def _load_features(item):
    if isinstance(item, torch.Tensor):
        feats = item.detach().cpu().float().numpy()
    elif _is_features_file(item):
        path = str(item)
        if not osp.isfile(path):
            raise FileNotFoundError(f'feature file not found: {path}; check the path')
        try:
            feats = np.load(path)
        except (ValueError, OSError) as exc:
            raise CaptionInputError(f'{path}: not a readable .npy feature file ({exc})') from None
    else:
        feats = np.asarray(item)
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise CaptionInputError(f'features must have shape (frames, dim), got {feats.shape}')
    return np.asarray(feats, dtype=np.float32)


def _check_dim(model, feats, source):
    want = _expected_dim(model)
    if want is not None and feats.shape[1] != want:
        raise CaptionInputError(
            f'{source}: {feats.shape[1]}-d features, but the model reads {want}-d ones; use '
            'the frame encoder the model was trained on (the config\'s frame_encoder)')


def caption_video(model, video_path_or_features, encoder=None, num_frames=None, config=None,
                  device=None, **decode):
    """Caption a video file, a list of them, or precomputed ``(T, D)`` frame features.

    Args:
        model: a captioner (e.g. from :func:`init_video_captioner` or ``init_captioner``).
        video_path_or_features: a video path; a ``.npy`` feature file; a ``(T, D)`` array
            or tensor; or a list/tuple of these (captioned one after another).
        encoder: frame encoder for video files (module or config dict); default the
            model's ``frame_encoder`` or the ``frame_encoder`` of ``config``.
        num_frames: frames sampled uniformly per video; default the model's
            ``num_frames`` (its config's test pipeline or its export's json), else the
            frame count of ``config``; 15 (SFTCap's) only when none of them says.
        config: the model's config (path, dict or Config) to take the defaults from.
        device: where the features go; default the model's device.
        **decode: decoding overrides passed to ``model.generate`` (e.g. ``strategy='beam'``).

    Returns:
        For one input a dict ``caption``, ``source``, ``num_frames`` and timings in
        seconds: ``read_time`` (decoding frames or loading features), ``encode_time``
        (frame encoder), ``caption_time`` (captioner) and ``time`` (all of it). For a list,
        a list of such dicts.

    Raises:
        VideoReadError: a video that does not exist or cannot be decoded.
        FileNotFoundError: a missing ``.npy`` file (or encoder weights).
        CaptionInputError: no frame encoder for a video, or features of the wrong size.
    """
    if isinstance(video_path_or_features, (list, tuple)):
        items, single = list(video_path_or_features), False
    else:
        items, single = [video_path_or_features], True
    cfg = _as_config(config)
    if encoder is None:
        encoder = getattr(model, 'frame_encoder', None) or config_frame_encoder(cfg)
        if isinstance(getattr(model, 'frame_encoder', None), dict):
            # an exported student's encoder config: build it once, keep it with the model
            model.frame_encoder = encoder = build_frame_encoder(encoder)
    encoder = build_frame_encoder(encoder)
    if num_frames is None:
        num_frames = (getattr(model, 'num_frames', None) or config_num_frames(cfg)
                      or DEFAULT_NUM_FRAMES)
    check_int('num_frames', num_frames, 1, CaptionInputError)
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device('cpu')
    model.eval()
    results = [_caption_one(model, item, encoder, int(num_frames), device, decode)
               for item in items]
    return results[0] if single else results


def _caption_one(model, item, encoder, num_frames, device, decode):
    start = time.perf_counter()
    encode_time = 0.0
    is_video = isinstance(item, (str, os.PathLike)) and not _is_features_file(item)
    if is_video:
        source = str(item)
        if encoder is None:
            raise CaptionInputError(
                f'{source}: a video needs a frame encoder; pass --encoder or '
                'encoder=dict(type=...) (the one the model was trained on, e.g. PixelGridEncoder '
                'grid=8 for the demo student) or add frame_encoder = dict(type=...) to the config')
        frames = read_video_frames(source, num_frames=num_frames)
        read_time = time.perf_counter() - start
        t0 = time.perf_counter()
        feats = encoder.encode_frames(frames)
        feats = feats.numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats)
        encode_time = time.perf_counter() - t0
    else:
        source = str(item) if _is_features_file(item) else '<features>'
        feats = _load_features(item)
        read_time = time.perf_counter() - start
    _check_dim(model, feats, source)
    feats = feats[uniform_indices(len(feats), num_frames)]
    t0 = time.perf_counter()
    key = getattr(model, 'feature_key', 'feats')
    x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))[None].to(device)
    inputs = {key: x, f'{key}_mask': torch.ones(x.shape[:2], dtype=torch.bool, device=device)}
    with torch.no_grad():
        ids = model.generate(inputs, **decode)
    caption = model.tokenizer.decode(ids[0].tolist())
    caption_time = time.perf_counter() - t0
    return dict(caption=caption, source=source, num_frames=int(len(feats)),
                read_time=read_time, encode_time=encode_time, caption_time=caption_time,
                time=time.perf_counter() - start)
