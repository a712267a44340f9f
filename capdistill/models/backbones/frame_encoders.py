"""Frame encoders: raw RGB frames in, one feature vector per frame out.

Every encoder here is an ``nn.Module`` with ``feature_dim`` (int), ``input_size``
(int, the square side frames are resized to) and ``encode_frames(frames)`` taking
uint8 ``(N, H, W, 3)`` RGB frames (numpy array or tensor) and returning float32
``(N, feature_dim)`` on the CPU. Each does its own resizing and normalisation and
runs without gradients; ``tools/extract_features.py`` writes their outputs to
``visual/<encoder>/frame_feature/<vid>.npy``.
"""
import logging
import os.path as osp

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from capdistill.registry import BACKBONES
from capdistill.utils.checkpoint import CheckpointError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def missing_weights_error(path, what='CLIP weights'):
    """The one-line error for a weight file that is not on disk."""
    return FileNotFoundError(
        f'weight file not found: {path}; place the {what} at {path} '
        f'(see model_zoo/README.md)')


def _as_float_nchw(frames, device):
    """uint8 ``(N, H, W, 3)`` -> float ``(N, 3, H, W)`` in [0, 255] on ``device``."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f'expected frames of shape (N, H, W, 3), got {tuple(frames.shape)}')
    return frames.to(device=device, non_blocking=True).permute(0, 3, 1, 2).float()


def _resize_center_crop(x, size, mode='bicubic', crop_pct=1.0):
    """Resize the short side to ``size / crop_pct``, then centre-crop ``size`` x ``size``."""
    h, w = x.shape[-2:]
    short = int(round(size / crop_pct))
    if h <= w:
        new_h, new_w = short, max(short, int(round(w * short / h)))
    else:
        new_h, new_w = max(short, int(round(h * short / w))), short
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode=mode, align_corners=False,
                          antialias=mode in ('bilinear', 'bicubic'))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return x[..., top:top + size, left:left + size]


def _device_of(module):
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device('cpu')


class FrameEncoder(nn.Module):
    """Shared plumbing: subclasses set ``feature_dim``/``input_size`` and define ``_encode``."""

    feature_dim: int
    input_size: int

    @torch.no_grad()
    def encode_frames(self, frames):
        """Encode uint8 ``(N, H, W, 3)`` RGB frames to float32 ``(N, feature_dim)`` (CPU)."""
        x = _as_float_nchw(frames, _device_of(self))
        if x.shape[0] == 0:
            return torch.zeros(0, self.feature_dim)
        return self._encode(x).float().cpu()

    def forward(self, frames):
        return self.encode_frames(frames)


@BACKBONES.register_module()
class PixelGridEncoder(FrameEncoder):
    """Weight-free, deterministic encoder: mean colour of each cell of a grid.

    Frames are resized to ``input_size`` x ``input_size``, average-pooled into
    ``grid`` x ``grid`` cells per RGB channel, scaled to [0, 1] and flattened
    (channel-major), giving ``grid * grid * 3`` dims: 768 for ``grid=16`` (the demo
    teacher's "fine" features) and 192 for ``grid=8`` (the student's "coarse" ones).
    ``global_stats=True`` appends per-channel mean and standard deviation (+6 dims).
    """

    def __init__(self, grid=8, input_size=64, global_stats=False):
        super().__init__()
        if input_size % grid:
            raise ValueError(f'input_size ({input_size}) must be a multiple of grid ({grid})')
        self.grid = int(grid)
        self.input_size = int(input_size)
        self.global_stats = bool(global_stats)
        self.feature_dim = self.grid * self.grid * 3 + (6 if self.global_stats else 0)

    def _encode(self, x):
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode='bilinear',
                              align_corners=False, antialias=True)
        x = x / 255.0
        cells = F.avg_pool2d(x, self.input_size // self.grid).flatten(1)
        if not self.global_stats:
            return cells
        stats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)
        return torch.cat([cells, stats], dim=1)


def _read_state_dict(path):
    """State dict from a safetensors file, a plain/wrapped torch file or a TorchScript
    archive (OpenAI's CLIP releases); the second value says whether it was TorchScript."""
    if str(path).endswith('.safetensors'):
        from safetensors.torch import load_file
        try:
            return load_file(path), False
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f'{path} cannot be read as safetensors ({exc}); '
                                  'is the file complete?') from exc
    try:
        scripted = torch.jit.load(path, map_location='cpu')
        state = {k: v for k, v in scripted.state_dict().items()}
        return state, True
    except (RuntimeError, ValueError):
        pass
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code, not a torch file at all
        raise CheckpointError(f'{path} cannot be read as a weight file '
                              f'({type(exc).__name__}); is the file complete?') from exc
    if not isinstance(state, dict):
        raise CheckpointError(f'{path} holds a {type(state).__name__}, not a state dict.')
    for key in ('state_dict', 'model', 'module'):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if any(k.startswith('module.') for k in state):
        state = {k[len('module.'):] if k.startswith('module.') else k: v
                 for k, v in state.items()}
    return state, False


def _check_fits(path, state, own, model_name):
    """Raise a one-line CheckpointError unless ``state`` has every tensor of ``own``
    with the same shape."""
    wrong = [k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state]
    if wrong:
        detail = (f'{wrong[0]} is {tuple(state[wrong[0]].shape)} but {model_name} needs '
                  f'{tuple(own[wrong[0]].shape)}')
    elif missing:
        detail = f'missing {len(missing)} tensors, e.g. {missing[0]}'
    else:
        return
    raise CheckpointError(f'{path}: weights do not fit {model_name} ({detail}); check the '
                          'model name that goes with this file.')


@BACKBONES.register_module()
class OpenCLIPVisual(FrameEncoder):
    """The visual tower of an open_clip CLIP model; outputs the image embedding.

    Args:
        model_name: open_clip architecture, e.g. ``'ViT-B-32'``, ``'ViT-B-16'``,
            ``'ViT-L-14'``.
        checkpoint: local weight file, either OpenAI's TorchScript release
            (``ViT-B-32.pt``) or an open_clip / plain state dict (``.pt``, ``.pth``,
            ``.bin``, ``.safetensors``). Nothing is ever downloaded.
        allow_random: allow ``checkpoint=None`` (random weights; tests only).
        quick_gelu: activation of the weights; ``None`` picks QuickGELU for OpenAI's
            TorchScript files and for model names ending in ``-quickgelu``.
        normalize: L2-normalise the embeddings (off: the raw projection output,
            as the SFTCap reference features).
    """

    def __init__(self, model_name='ViT-B-32', checkpoint=None, allow_random=False,
                 quick_gelu=None, normalize=False):
        super().__init__()
        from capdistill.utils.compat import patch_torchvision
        patch_torchvision()  # open_clip imports torchvision
        import open_clip
        state, scripted = None, False
        if checkpoint is None:
            if not allow_random:
                raise ValueError(
                    f'OpenCLIPVisual({model_name!r}) needs checkpoint=<local weight file> '
                    '(e.g. model_zoo/clip_model/ViT-B-32.pt); allow_random=True only for tests')
        else:
            if not osp.isfile(checkpoint):
                raise missing_weights_error(checkpoint)
            state, scripted = _read_state_dict(checkpoint)
        if quick_gelu is None:
            quick_gelu = scripted
        # open_clip logs "no pretrained weights loaded" here; the weights come below.
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            model = open_clip.create_model(model_name, pretrained=None, load_weights=False,
                                           force_quick_gelu=bool(quick_gelu))
        finally:
            logging.disable(previous)
        self.visual = model.visual
        del model
        if state is not None:
            visual_state = {k[len('visual.'):]: v for k, v in state.items()
                            if k.startswith('visual.')}
            if not visual_state:
                raise CheckpointError(f'{checkpoint}: no "visual.*" weights in this file; '
                                      'is it a CLIP checkpoint?')
            _check_fits(checkpoint, visual_state, self.visual.state_dict(), model_name)
            self.visual.load_state_dict(visual_state, strict=False)
        self.model_name = model_name
        self.normalize = normalize
        image_size = self.visual.image_size
        self.input_size = int(image_size[0] if isinstance(image_size, (tuple, list))
                              else image_size)
        self.feature_dim = int(self.visual.output_dim)
        self.register_buffer('mean', torch.tensor(CLIP_MEAN).view(1, 3, 1, 1) * 255,
                             persistent=False)
        self.register_buffer('std', torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255,
                             persistent=False)
        self.eval().requires_grad_(False)

    def _encode(self, x):
        x = _resize_center_crop(x, self.input_size, mode='bicubic')
        x = ((x.clamp(0, 255) - self.mean) / self.std).to(self.mean.dtype)
        feats = self.visual(x)
        if isinstance(feats, (tuple, list)):
            feats = feats[0]
        if self.normalize:
            feats = F.normalize(feats, dim=-1)
        return feats


@BACKBONES.register_module()
class TimmFrameEncoder(FrameEncoder):
    """A timm image model without its classifier (``num_classes=0``): pooled features.

    Args:
        model_name: timm architecture name, e.g. ``'resnet50'``.
        checkpoint: local weight file for it (the classifier's weights, if present,
            are dropped). Nothing is ever downloaded.
        allow_random: allow ``checkpoint=None`` (random weights; tests only).
    """

    def __init__(self, model_name, checkpoint=None, allow_random=False):
        super().__init__()
        from capdistill.utils.compat import patch_torchvision
        patch_torchvision()  # timm imports torchvision
        import timm
        from timm.data import resolve_data_config
        if checkpoint is None and not allow_random:
            raise ValueError(f'TimmFrameEncoder({model_name!r}) needs checkpoint=<local '
                             'weight file>; allow_random=True only for tests')
        if checkpoint is not None and not osp.isfile(checkpoint):
            raise missing_weights_error(checkpoint, what=f'{model_name} weights')
        self.model = timm.create_model(model_name, pretrained=False, num_classes=0)
        if checkpoint is not None:
            state, _ = _read_state_dict(checkpoint)
            own = self.model.state_dict()
            state = {k: v for k, v in state.items() if k in own}  # drops the classifier
            _check_fits(checkpoint, state, own, model_name)
            self.model.load_state_dict(state, strict=True)
        cfg = resolve_data_config({}, model=self.model)
        self.model_name = model_name
        self.input_size = int(cfg['input_size'][-1])
        self.crop_pct = float(cfg.get('crop_pct') or 1.0)
        self.interpolation = 'bilinear' if cfg.get('interpolation') == 'bilinear' else 'bicubic'
        self.feature_dim = int(self.model.num_features)
        self.register_buffer('mean', torch.tensor(cfg['mean']).view(1, 3, 1, 1) * 255,
                             persistent=False)
        self.register_buffer('std', torch.tensor(cfg['std']).view(1, 3, 1, 1) * 255,
                             persistent=False)
        self.eval().requires_grad_(False)

    def _encode(self, x):
        x = _resize_center_crop(x, self.input_size, mode=self.interpolation,
                                crop_pct=self.crop_pct)
        x = (x.clamp(0, 255) - self.mean) / self.std
        return self.model(x)
