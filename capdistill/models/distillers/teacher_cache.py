"""Disk cache of teacher outputs for a fixed pass over the training data.

One safetensors file per training caption, keyed by the video id and a hash of the
caption's token ids (the batch carries no caption index, and the tokens identify the
caption within its video). What is stored:

* ``t_logits``: the top-``k`` logits and their word ids at each caption position
  (trimmed to the caption's length). On reading, every other word gets the logit
  ``-1e4``, i.e. the teacher's distribution is renormalised over its top ``k`` words;
  ``topk=None`` stores the full distribution (``V`` floats per token).
* every teacher recorder the losses use, at full size (one tensor per caption).

The folder belongs to the teacher that filled it: ``teacher.json`` records its weights'
checksum, ``topk`` and the vocabularies (:meth:`TeacherCache.bind`), and a run whose teacher
differs stops instead of reading another teacher's outputs. The cache is only right while
the teacher's inputs for a caption stay the same between epochs: random frame sampling,
feature augmentation or re-extracted features make it stale. So the first batch read from
it, and every ``verify_every``-th after, is also computed by the teacher and compared
(:meth:`TeacherCache.verify`); outputs that differ stop the run. Reads are per file; for
large datasets put the folder on a local disk.
"""
import hashlib
import json
import os
import re

import torch
from mmengine.logging import print_log
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from capdistill.utils.files import atomic_open
from capdistill.utils.requirements import ModelConfigError
from capdistill.utils.values import is_int

FILL = -1e4
#: the file that ties a cache folder to its teacher
SIGNATURE = 'teacher.json'


class TeacherCacheError(ModelConfigError):
    """A cache written for another teacher (weights, top-k or vocabularies)."""


def check_signature(theirs, ours, what, key, kind='file'):
    """Raise :class:`TeacherCacheError` when a cache's recorded teacher ``theirs`` is not
    this run's ``ours`` (``what`` names the cache, ``key`` the config key to change)."""
    differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    if differ:
        raise TeacherCacheError(
            f'{what} holds the outputs of another teacher ({", ".join(differ)} differ from '
            f"this run's); delete the {kind} or give {key} a new one.")


def caption_key(video_id, tokens, pad_id=0):
    ids = [int(t) for t in tokens if int(t) != pad_id]
    digest = hashlib.sha1(','.join(map(str, ids)).encode()).hexdigest()[:12]
    safe = re.sub(r'[^A-Za-z0-9_.-]', '_', str(video_id))
    return f'{safe}-{digest}'


class TeacherCache:
    """Read/write teacher outputs per caption.

    Args:
        cache_dir (str): folder of the cache files.
        topk (int, optional): logits kept per position (None: all).
        mode (str): ``'auto'`` (read what exists, compute and write the rest),
            ``'write'`` (always compute and overwrite) or ``'read'`` (every caption
            must be cached; a missing one is an error).
        verify_every (int): the first batch read from the cache and every
            ``verify_every``-th after are also run through the teacher and compared
            (one teacher forward per that many cached batches); 0 never checks.
        tolerance (float): outputs agree when ``|live - cached| <= tolerance * (1 +
            |cached|)`` everywhere (float32 and mixed-precision rounding stay far below).
    """

    def __init__(self, cache_dir, topk=32, mode='auto', verify_every=100, tolerance=1e-2):
        # ModelConfigError: a bad setting stops the run at build, in one line
        if topk is not None and not (is_int(topk) and topk >= 1):
            raise ModelConfigError('teacher_cache topk must be an integer >= 1 (logits kept '
                                   f'per position) or None (all of them), not {topk!r}.')
        if mode not in ('auto', 'write', 'read'):
            raise ModelConfigError("teacher_cache mode must be 'auto', 'write' or 'read', "
                                   f'not {mode!r}.')
        if not (is_int(verify_every) and verify_every >= 0):
            raise ModelConfigError('teacher_cache verify_every must be an integer >= 0 (0: '
                                   f'never compare with the teacher), not {verify_every!r}.')
        if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) \
                or not tolerance >= 0:
            raise ModelConfigError('teacher_cache tolerance must be a number >= 0, not '
                                   f'{tolerance!r}.')
        self.dir, self.topk, self.mode = cache_dir, topk, mode
        self.verify_every, self.tolerance = verify_every, float(tolerance)
        os.makedirs(cache_dir, exist_ok=True)
        self.hits = self.misses = 0
        self.read_batches = self.verified_batches = self.written = 0

    def _path(self, key):
        return os.path.join(self.dir, key + '.safetensors')

    def bind(self, signature):
        """Tie the folder to the teacher whose outputs it holds (``signature``: a dict of
        what decides them); a folder written under another signature stops the run."""
        path = os.path.join(self.dir, SIGNATURE)
        signature = dict(signature, topk=self.topk)
        if os.path.isfile(path):
            with open(path, encoding='utf-8') as f:
                check_signature(json.load(f), signature, f'Teacher cache {self.dir}',
                                'model.teacher_cache.cache_dir', 'folder')
            return
        with atomic_open(path, 'w', encoding='utf-8') as f:
            json.dump(signature, f, indent=1)

    def load(self, keys, total_len, vocab_size, names):
        """Batched tensors for ``keys`` or None when any caption is missing."""
        if self.mode == 'write' or not all(os.path.isfile(self._path(k)) for k in keys):
            if self.mode == 'read':
                missing = [k for k in keys if not os.path.isfile(self._path(k))]
                raise FileNotFoundError(f'Teacher cache {self.dir} lacks {missing[0]} (and '
                                        f'{len(missing) - 1} more in this batch); run once '
                                        "with mode='auto' or 'write'.")
            self.misses += len(keys)
            return None
        self.hits += len(keys)
        items = [load_file(self._path(k)) for k in keys]
        out = {}
        if 't_logits' in names:
            dense = torch.full((len(keys), total_len, vocab_size), FILL)
            for i, item in enumerate(items):
                n = item['t_logits.values'].shape[0]
                dense[i, :n].scatter_(-1, item['t_logits.indices'].long(),
                                      item['t_logits.values'])
            out['t_logits'] = dense
        for name in names:
            if name != 't_logits':
                out[name] = torch.stack([item[name] for item in items])
        return out

    def due_for_check(self):
        """Count a batch read from the cache; True when the teacher should check it."""
        self.read_batches += 1
        n, every = self.read_batches, self.verify_every
        return bool(every) and (n == 1 or n % every == 0)

    def verify(self, keys, cached, live):
        """Stop the run when the teacher's outputs ``live`` for captions ``keys`` are not
        the ``cached`` ones (the cached top-k logits and every cached tensor)."""
        self.verified_batches += 1
        largest = 0.0
        for name, value in cached.items():
            diff = (live[name].to(device=value.device, dtype=torch.float32) - value).abs()
            if name == 't_logits':
                diff = diff * (value > FILL / 2)  # the words the cache keeps
            excess = diff - self.tolerance * (1 + value.abs())
            if excess.max() <= 0:
                largest = max(largest, float(diff.max()))
                continue
            row = int(excess.reshape(len(keys), -1).max(1).values.argmax())
            raise TeacherCacheError(
                f'Teacher cache {self.dir}: the cached {name} of caption {keys[row]} differ '
                f'from what the teacher computes now (by up to {float(diff[row].max()):.3g}). '
                "The teacher's inputs for a caption changed since the cache was written: "
                'random frame sampling or feature augmentation in the training pipeline, or '
                'features re-extracted. Train without the cache (model.teacher_cache=None), '
                'make those inputs the same every epoch, or delete the folder after '
                're-extracting.')
        if self.verified_batches == 1:  # once per run: the log shows the check happened
            print_log(f'Teacher cache {self.dir}: a batch read from it agrees with the '
                      f'teacher (largest difference {largest:.2g}); checked again every '
                      f'{self.verify_every} batches read.', logger='current')

    def save(self, keys, lengths, tensors):
        """Write one file per caption; ``tensors`` are batched teacher outputs."""
        if not self.written:
            print_log(f'Teacher cache {self.dir}: writing the teacher outputs of batches not '
                      'cached yet (one file per caption); later reads skip the teacher.',
                      logger='current')
        self.written += len(keys)
        for i, key in enumerate(keys):
            item = {}
            for name, value in tensors.items():
                if name == 't_logits':
                    logits = value[i, :lengths[i]].float()
                    if self.topk is None or self.topk >= logits.shape[-1]:
                        idx = torch.arange(logits.shape[-1]).expand_as(logits)
                        vals = logits
                    else:
                        vals, idx = logits.topk(self.topk, dim=-1)
                    item['t_logits.values'] = vals.contiguous().cpu()
                    item['t_logits.indices'] = idx.to(torch.int32).contiguous().cpu()
                else:
                    item[name] = value[i].detach().float().contiguous().cpu()
            # a temporary file of its own per writer: runs sharing a cache may fill it at once
            with atomic_open(self._path(key)) as f:
                f.write(safetensors_bytes(item))
