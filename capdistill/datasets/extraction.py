"""Frame-feature extraction: videos -> ``<out_dir>/<vid>.npy`` of shape ``(T, feature_dim)``.

Decoding runs in DataLoader worker processes while the main process encodes, so
the encoder does not wait on the decoder. Every file is written atomically (a
temporary file in the same folder, then ``os.replace``), so an interrupted run
leaves no half-written features and a rerun skips what is done.
"""
import ast
import os
import os.path as osp
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from capdistill.datasets.video_io import VideoReadError, list_videos, video_id
from capdistill.utils.device import check_device
from capdistill.utils.files import atomic_open
from capdistill.utils.values import check_int, is_real

# name -> (encoder config, folder name under visual/): tools/extract_features.py --encoder;
# exports recognise a run's features by the folder name.
ENCODER_PRESETS = {
    'pixel-grid8': (dict(type='PixelGridEncoder', grid=8), 'grid8'),
    'pixel-grid16': (dict(type='PixelGridEncoder', grid=16), 'grid16'),
    'clip-b32': (dict(type='OpenCLIPVisual', model_name='ViT-B-32',
                      checkpoint='model_zoo/clip_model/ViT-B-32.pt'), 'clip_b32'),
    'clip-b16': (dict(type='OpenCLIPVisual', model_name='ViT-B-16',
                      checkpoint='model_zoo/clip_model/ViT-B-16.pt'), 'clip_b16'),
    'clip-l14': (dict(type='OpenCLIPVisual', model_name='ViT-L-14',
                      checkpoint='model_zoo/clip_model/ViT-L-14.pt'), 'clip_l14'),
}


def parse_encoder_cfg(text):
    """An encoder config from a dict literal, ``{...}`` or ``dict(...)``, evaluating no code."""
    tree = ast.parse(text.strip(), mode='eval').body
    if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == 'dict':
        if tree.args:
            raise ValueError('use keyword arguments only in dict(...)')
        value = {kw.arg: ast.literal_eval(kw.value) for kw in tree.keywords}
    else:
        value = ast.literal_eval(tree)
    if not isinstance(value, dict) or 'type' not in value:
        raise ValueError('the encoder config must be a dict with a "type" key')
    return value


def encoder_from_options(encoder=None, encoder_cfg=None, checkpoint=None, default=None):
    """The frame-encoder config the tools' ``--encoder``/``--encoder-cfg`` options ask for.

    ``encoder`` names a preset of :data:`ENCODER_PRESETS`, ``encoder_cfg`` is a dict
    literal; with neither, ``default`` (a preset name) or None. ``checkpoint`` replaces
    the weight file.
    """
    if encoder_cfg is not None:
        try:
            cfg = parse_encoder_cfg(encoder_cfg)
        except (SyntaxError, ValueError) as exc:
            raise ValueError(f'cannot read --encoder-cfg {encoder_cfg!r}: {exc}') from None
    elif encoder or default:
        cfg = dict(ENCODER_PRESETS[encoder or default][0])
    else:
        return None
    if checkpoint:
        cfg['checkpoint'] = checkpoint
    return cfg


class _VideoFrames(Dataset):
    """Decodes one video per item; errors come back as a reason, not an exception."""

    def __init__(self, items, num_frames, fps):
        self.items = items
        self.num_frames = num_frames
        self.fps = fps

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        from capdistill.datasets.video_io import read_video_frames
        vid, path = self.items[index]
        try:
            frames = read_video_frames(path, num_frames=self.num_frames, fps=self.fps)
        except VideoReadError as exc:
            return vid, path, None, exc.reason
        except Exception as exc:  # a worker must not die on one bad file
            return vid, path, None, f'{type(exc).__name__}: {str(exc).splitlines()[0][:200]}'
        # A tensor travels from the worker through shared memory, not a pickle.
        return vid, path, torch.from_numpy(frames), None


def _identity(item):
    return item


def _normalise_videos(videos):
    if isinstance(videos, (str, os.PathLike)):
        return list_videos(videos)
    if isinstance(videos, dict):
        return [(str(k), str(v)) for k, v in videos.items()]
    items = []
    for entry in videos:
        if isinstance(entry, (tuple, list)):
            items.append((str(entry[0]), str(entry[1])))
        else:
            items.append((video_id(entry), str(entry)))
    return items


def save_npy_atomic(path, array):
    """Write ``array`` to ``path`` (.npy) through a temporary file and ``os.replace``."""
    with atomic_open(path, 'wb') as f:
        np.save(f, array)


def _progress(total, enabled):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
        return tqdm(total=total, unit='video', dynamic_ncols=True, file=sys.stderr)
    except ImportError:  # mmengine's bar also shows an ETA
        from mmengine.utils import ProgressBar
        bar = ProgressBar(total)
        bar.update = lambda n=1, _u=bar.update: [_u() for _ in range(n)]
        bar.set_postfix_str = lambda s: None
        bar.close = lambda: None
        return bar


def _build_encoder(encoder):
    if isinstance(encoder, dict):
        from capdistill.registry import BACKBONES
        return BACKBONES.build(encoder)
    return encoder


class _ShapeBatcher:
    """Encodes decoded videos in batches of ``batch_size`` frames and writes each video.

    Only frames of one size share an encoder call: videos of a real corpus differ in
    resolution and aspect ratio, and the encoder resizes each frame itself, so the raw
    frames of different videos are never joined. Each frame size has its own queue; a
    few queues (``max_queues``) stay open so that a corpus with a handful of common sizes
    still fills whole batches, the oldest being encoded when a new size comes or when
    the queued frames pass ``max_bytes`` (large frames of many sizes). A batch
    the encoder fails on is retried one video at a time, so only the videos that fail
    are recorded as failures.
    """

    max_queues = 4
    max_bytes = 1 << 29

    def __init__(self, encoder, batch_size, device, use_autocast, out_dir, out_dtype):
        self.encoder, self.batch_size, self.device = encoder, max(1, int(batch_size)), device
        self.use_autocast, self.out_dir, self.out_dtype = use_autocast, out_dir, out_dtype
        self.queues = {}  # (H, W) -> list of [vid, path, frames]; insertion order = age
        self.done, self.enc_time, self.failures = 0, 0.0, []
        self.on_video = lambda: None

    def add(self, vid, path, frames):
        key = tuple(frames.shape[1:3])
        if key not in self.queues and len(self.queues) >= self.max_queues:
            self._encode_queue(next(iter(self.queues)), everything=True)
        self.queues.setdefault(key, []).append([vid, path, frames])
        self._encode_queue(key, everything=False)
        while self.queues and sum(item[2].nbytes for queue in self.queues.values()
                                  for item in queue) > self.max_bytes:
            self._encode_queue(next(iter(self.queues)), everything=True)

    def flush(self):
        for key in list(self.queues):
            self._encode_queue(key, everything=True)

    def _encode_queue(self, key, everything):
        """Encode whole batches of the queue (all of it with ``everything``)."""
        queue = self.queues[key]
        while queue:
            queued = sum(len(item[2]) for item in queue)
            if queued < self.batch_size and not everything:
                return
            # Take whole videos up to one batch; a video longer than a batch goes alone
            # and is split into batch-size encoder calls.
            take, count = 0, 0
            while take < len(queue) and (take == 0 or
                                         count + len(queue[take][2]) <= self.batch_size):
                count += len(queue[take][2])
                take += 1
            if not everything and count < self.batch_size and take == len(queue):
                return
            batch, queue[:take] = queue[:take], []
            self._encode_videos(batch)
        del self.queues[key]

    def _run_encoder(self, frames):
        feats = []
        t0 = time.perf_counter()
        for i in range(0, len(frames), self.batch_size):
            with torch.autocast('cuda', dtype=torch.float16, enabled=self.use_autocast):
                out = self.encoder.encode_frames(torch.from_numpy(frames[i:i + self.batch_size]))
            feats.append(out.float().cpu().numpy())
        if torch.device(self.device).type == 'cuda':
            torch.cuda.synchronize()
        self.enc_time += time.perf_counter() - t0
        return np.concatenate(feats) if len(feats) > 1 else feats[0]

    def _encode_videos(self, batch):
        frames = (np.concatenate([item[2] for item in batch]) if len(batch) > 1
                  else batch[0][2])
        try:
            feats = self._run_encoder(frames)
        except Exception as exc:
            if len(batch) == 1:
                vid, path, frames = batch[0]
                self.failures.append((vid, path, f'frame encoder failed on its '
                                      f'{frames.shape[2]}x{frames.shape[1]} frames '
                                      f'({type(exc).__name__}: {_first_line(exc)})'))
                self.on_video()
                return
            for item in batch:  # find the culprit; the other videos are still written
                self._encode_videos([item])
            return
        offset = 0
        for vid, _, video_frames in batch:
            n = len(video_frames)
            save_npy_atomic(osp.join(self.out_dir, f'{vid}.npy'),
                            feats[offset:offset + n].astype(self.out_dtype))
            offset += n
            self.done += 1
            self.on_video()


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return (text[0] if text else '')[:200]


def extract_features(videos, encoder, out_dir, num_frames=15, fps=None, batch_size=64,
                     workers=2, fp16=False, resume=True, failures_file=None,
                     device=None, progress=True, verbose=True, shard=None):
    """Extract frame features of many videos to ``<out_dir>/<vid>.npy``.

    Args:
        videos: a folder, a list file or one video (see ``list_videos``), a list of
            paths or ``(video_id, path)`` pairs, or a ``{video_id: path}`` dict.
        encoder: a frame encoder (``feature_dim``, ``encode_frames``) or its config dict
            for the ``BACKBONES`` registry.
        out_dir: output folder (created).
        num_frames: frames sampled uniformly per video (the default 15 follows SFTCap);
            set ``None`` and give ``fps`` to sample at a fixed rate instead.
        batch_size: frames per encoder call; videos whose frames have one size share
            calls (frames of different sizes are never joined).
        workers: decoding processes (0: decode in this process).
        fp16: store float16 (and run the encoder under fp16 autocast on CUDA).
        resume: skip videos whose output exists.
        failures_file: where unreadable videos are listed (``vid<TAB>path<TAB>reason``);
            default ``<out_dir>/../failures.txt``. Rewritten on every run.
        device: where the encoder runs; default CUDA when available, else CPU.
        shard: ``(index, count)`` to process every ``count``-th video from ``index``
            (of the whole sorted list, so a shard keeps its videos between runs), e.g. one
            shard per GPU; its failures go to ``failures.shard-I-of-N.txt`` beside
            ``failures_file`` (:func:`merge_shard_failures` joins them).

    Returns:
        dict with ``total``, ``done``, ``skipped``, ``failed``, ``frames``,
        ``frames_per_s``, ``wall_time``, ``encoder_time``, ``wall_encoder_ratio``,
        ``out_dir`` and ``failures_file``.
    """
    start = time.perf_counter()
    if num_frames is not None and fps is not None:
        raise ValueError('give num_frames or fps, not both')
    # settings that would fail every video are one error before any work
    if num_frames is not None:
        check_int('num_frames', num_frames, 1)
    check_int('batch_size', batch_size, 1)
    check_int('workers', workers, 0)
    if fps is not None and not (is_real(fps) and fps > 0):
        raise ValueError(f'fps must be a number > 0, got {fps!r}')
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    device = check_device(device)  # a missing GPU: one error, not every video failing
    items = _normalise_videos(videos)
    if shard is not None:
        index, count = shard
        items = items[index::count]
    out_dir = str(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    if failures_file is None:
        failures_file = osp.join(osp.dirname(osp.abspath(out_dir)), 'failures.txt')

    todo, skipped = [], 0
    for vid, path in items:
        if resume and osp.exists(osp.join(out_dir, f'{vid}.npy')):
            skipped += 1
        else:
            todo.append((vid, path))

    encoder = _build_encoder(encoder)
    encoder = encoder.to(device).eval()
    use_autocast = fp16 and torch.device(device).type == 'cuda'
    out_dtype = np.float16 if fp16 else np.float32

    failures, n_frames = [], 0
    batcher = _ShapeBatcher(encoder, batch_size, device, use_autocast, out_dir, out_dtype)
    bar = _progress(len(todo), progress and len(todo) > 0)
    batcher.on_video = (lambda: bar.update(1)) if bar is not None else (lambda: None)
    loader = DataLoader(
        _VideoFrames(todo, num_frames, fps), batch_size=None, shuffle=False,
        num_workers=workers, collate_fn=_identity,
        prefetch_factor=4 if workers > 0 else None,
        persistent_workers=False)
    try:
        for vid, path, frames, reason in loader:
            if frames is None:
                failures.append((vid, path, reason))
                batcher.on_video()
                continue
            n_frames += len(frames)
            batcher.add(vid, path, frames.numpy())
            if bar is not None and batcher.enc_time > 0:
                bar.set_postfix_str(f'{n_frames / (time.perf_counter() - start):.0f} frames/s')
        batcher.flush()
    finally:
        if bar is not None:
            bar.close()
    failures += batcher.failures
    done, enc_time = batcher.done, batcher.enc_time

    if shard is not None and shard[1] > 1:
        failures_file = shard_failures_file(failures_file, *shard)
    _write_failures(failures_file, failures)

    wall = time.perf_counter() - start
    summary = dict(
        total=len(items), done=done, skipped=skipped, failed=len(failures),
        frames=n_frames, frames_per_s=n_frames / wall if wall > 0 else 0.0,
        wall_time=wall, encoder_time=enc_time,
        wall_encoder_ratio=wall / enc_time if enc_time > 0 else float('nan'),
        out_dir=out_dir, failures_file=failures_file if failures else None,
        feature_dim=int(encoder.feature_dim))
    if verbose:
        print(format_summary(summary), file=sys.stderr)
    return summary


def _write_failures(path, failures):
    """``vid<TAB>path<TAB>reason`` lines, written atomically; no failures: no file."""
    if not failures:
        if osp.exists(path):
            os.remove(path)  # nothing failed this time: the old list is stale
        return
    with atomic_open(path, 'w', encoding='utf-8') as f:
        for vid, video, reason in failures:
            f.write(f'{vid}\t{video}\t{reason}\n')


def shard_failures_file(failures_file, index, count):
    """Where shard ``index`` of ``count`` lists its failures: ``failures.shard-I-of-N.txt``."""
    stem, ext = osp.splitext(failures_file)
    return f'{stem}.shard-{index}-of-{count}{ext or ".txt"}'


def merge_shard_failures(failures_file, count):
    """Join the failure lists of shards ``0..count-1`` into ``failures_file``.

    Shard lists stay beside it (a shard rerun rewrites its own list); the merged file is
    removed when no shard has failures. Returns the number of failed videos.
    """
    rows = []
    for index in range(count):
        path = shard_failures_file(failures_file, index, count)
        if osp.exists(path):
            with open(path, encoding='utf-8') as f:
                rows += [line.rstrip('\n').split('\t', 2) for line in f if line.strip()]
    _write_failures(failures_file, rows)
    return len(rows)


def format_summary(summary):
    """One readable line (two with failures) for an ``extract_features`` summary."""
    line = (f'extracted {summary["done"]}, skipped {summary["skipped"]} (already done), '
            f'failed {summary["failed"]} of {summary["total"]} videos -> {summary["out_dir"]}; '
            f'{summary["frames"]} frames in {summary["wall_time"]:.1f} s '
            f'({summary["frames_per_s"]:.0f} frames/s), encoder {summary["encoder_time"]:.1f} s, '
            f'wall/encoder {summary["wall_encoder_ratio"]:.2f}')
    if summary['failed']:
        line += f'\nunreadable videos listed in {summary["failures_file"]}'
    return line
