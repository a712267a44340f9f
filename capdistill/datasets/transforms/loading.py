"""Per-sample transforms: frame features in, packed model inputs out."""
import os
import zipfile

import numpy as np
import torch

from capdistill.registry import TRANSFORMS
from capdistill.utils.values import check_int
from ..annotations import DataError


def uniform_indices(num_stored: int, num_frames: int) -> np.ndarray:
    """``num_frames`` indices spread evenly over ``num_stored`` frames (linspace)."""
    if num_stored <= num_frames:
        return np.arange(num_stored)
    return np.linspace(0, num_stored - 1, num_frames).round().astype(np.int64)


def check_features(arr, where, expected_dim=None):
    """Validate a ``(frames, dim)`` feature array; ``where`` names it in errors."""
    if arr.ndim == 1 and arr.size:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise DataError(f'{where}: expected features of shape (frames, dim), got '
                        f'{tuple(arr.shape)}; re-extract it.')
    if expected_dim is not None and arr.shape[1] != expected_dim:
        raise DataError(f'{where}: feature dim {arr.shape[1]}, expected {expected_dim}; '
                        'check feature_dirs and the model\'s in_dim.')
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f'{where}: non-numeric features ({arr.dtype}).')
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise DataError(f'{where}: features contain NaN or Inf; re-extract it.')
    return arr


def read_feature_file(path, expected_dim=None):
    """A ``(frames, dim)`` float32 array from a .npy file, checked."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f'Feature file not found: {path}.') from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f'{path}: unreadable feature file ({exc}); re-extract it with '
                        'tools/extract_features.py.') from None
    return check_features(arr, path, expected_dim)


_H5 = {}


def _h5_file(path):
    """One read-only handle per file and process (handles do not survive fork)."""
    key = (path, os.getpid())
    if key not in _H5:
        import h5py
        try:
            _H5[key] = h5py.File(path, 'r')
        except OSError as exc:
            raise DataError(f'{path}: unreadable HDF5 feature file ({exc}).') from None
    return _H5[key]


def read_h5_features(path, vid, expected_dim=None):
    """A ``(frames, dim)`` float32 array stored under key ``vid`` of HDF5 file ``path``."""
    f = _h5_file(path)
    if vid not in f:
        raise DataError(f'{path}: no entry for video {vid!r}.')
    try:
        arr = np.asarray(f[vid][()])
    except (OSError, TypeError, KeyError) as exc:
        raise DataError(f'{path}: entry {vid!r} unreadable ({exc}).') from None
    return check_features(arr, f'{path} [{vid}]', expected_dim)


def read_features(source, expected_dim=None):
    """Features from a .npy path or an ``(h5 file, video id)`` pair."""
    if isinstance(source, (tuple, list)):
        return read_h5_features(source[0], source[1], expected_dim)
    return read_feature_file(source, expected_dim)


class TextList:
    """A sample's list of strings (references, concept words), kept whole by batching.

    mmengine's default ``pseudo_collate`` transposes list fields across a batch (and
    fails when their lengths differ, as MSVD's reference counts do); this read-only
    sequence is not a ``collections.abc.Sequence``, so each sample keeps its own list.
    """
    __slots__ = ('items',)

    def __init__(self, items=()):
        self.items = [str(x) for x in items]

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def __eq__(self, other):
        return list(self) == list(other) if isinstance(other, (list, tuple, TextList)) \
            else NotImplemented

    def __repr__(self):
        return f'TextList({self.items!r})'

    def __getstate__(self):
        return self.items

    def __setstate__(self, state):
        self.items = state


def _where(source):
    return f'{source[0]} [{source[1]}]' if isinstance(source, (tuple, list)) else source


@TRANSFORMS.register_module()
class LoadFrameFeatures:
    """Load each input's features and sample ``num_frames`` uniformly.

    Adds ``<key>`` ``(num_frames, dim)`` and ``<key>_mask`` ``(num_frames,)`` (True
    for real frames; shorter videos are zero-padded) for every key of
    ``results['feature_paths']``.

    Args:
        num_frames (int): frames per video after sampling.
        feature_dims (dict, optional): expected dim per key, checked on load.
        cache (bool): keep loaded arrays in memory (per worker process); worth it
            for small datasets read many epochs.
    """

    def __init__(self, num_frames=15, feature_dims=None, cache=False):
        check_int('LoadFrameFeatures num_frames', num_frames, 1, DataError)
        self.num_frames = num_frames
        self.feature_dims = feature_dims or {}
        self.cache = {} if cache else None
        self._seen_dims = {}

    def _sampled(self, path, key):
        arr = read_features(path, self.feature_dims.get(key))
        # without feature_dims, every video of one input must share the first one's dim
        dim = self._seen_dims.setdefault(key, (arr.shape[1], path))
        if dim[0] != arr.shape[1]:
            raise DataError(f'{_where(path)}: feature dim {arr.shape[1]} differs from '
                            f'{dim[0]} in {_where(dim[1])} (input {key!r}); one input '
                            'must use one feature set.')
        idx = uniform_indices(len(arr), self.num_frames)
        feats = np.zeros((self.num_frames, arr.shape[1]), dtype=np.float32)
        feats[:len(idx)] = arr[idx]
        mask = np.zeros(self.num_frames, dtype=bool)
        mask[:len(idx)] = True
        return feats, mask

    def __call__(self, results):
        for key, path in results['feature_paths'].items():
            # sampling is deterministic, so the cache keeps the sampled frames only
            ckey = (key, tuple(path) if isinstance(path, list) else path)
            if self.cache is not None and ckey in self.cache:
                feats, mask = self.cache[ckey]
            else:
                feats, mask = self._sampled(path, key)
                if self.cache is not None:
                    self.cache[ckey] = (feats, mask)
            # cached arrays are shared, not copied: batching stacks them into new tensors,
            # and nothing downstream writes into a sample's features
            results[key] = feats
            results[f'{key}_mask'] = mask
        return results


@TRANSFORMS.register_module()
class PackCaptionInputs:
    """Split a sample into model ``inputs`` (tensors) and ``data_samples`` (the rest)."""

    meta_keys = ('video_id', 'refs', 'caption', 'tokens', 'weight', 'obj_tokens',
                 'act_tokens', 'obj_words', 'act_words', 'teacher_caption', 'teacher_tokens',
                 'labeled')
    tensor_keys = ('tokens', 'obj_tokens', 'act_tokens', 'teacher_tokens')
    text_keys = ('refs', 'obj_words', 'act_words')

    def __call__(self, results):
        inputs = {}
        for key in results['feature_paths']:
            inputs[key] = torch.from_numpy(results[key])
            inputs[f'{key}_mask'] = torch.from_numpy(results[f'{key}_mask'])
        samples = {k: results[k] for k in self.meta_keys if k in results}
        for key in self.tensor_keys:
            if key in samples:
                samples[key] = torch.as_tensor(samples[key], dtype=torch.long)
        for key in self.text_keys:
            if key in samples:
                samples[key] = TextList(samples[key])
        return dict(inputs=inputs, data_samples=samples)
