"""Reading frames from video files with PyAV.

Frames are sampled uniformly over the whole video (by decoded frame index) or at a
fixed rate, and returned as ``(T, H, W, 3)`` uint8 RGB arrays.
"""
import os
import os.path as osp

import numpy as np

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.webm', '.mkv', '.mov')

# FFmpeg demuxers and codecs that turn text or still pictures into "video": its tty demuxer
# opens a text file of a few hundred bytes (a list file, notes) as an ANSI-art animation.
_TEXT_FORMATS = {'tty', 'bin', 'xbin', 'adf', 'idf', 'ass', 'srt', 'webvtt', 'subviewer'}
_TEXT_CODECS = {'ansi', 'bintext', 'xbin', 'idf'}
_IMAGE_FORMATS = {'image2', 'image2pipe'}


class VideoReadError(Exception):
    """A video that cannot be read; the message is one line naming file and reason."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f'{self.path}: {reason}')


def _open(path):
    import av
    path = str(path)
    if not osp.exists(path):
        raise VideoReadError(path, 'no such file')
    if osp.isdir(path):
        raise VideoReadError(path, 'is a directory, not a video file')
    if osp.getsize(path) == 0:
        raise VideoReadError(path, 'empty file (0 bytes)')
    try:
        container = av.open(path)
    except Exception as exc:  # PyAV raises many FFmpeg error types
        raise VideoReadError(path, f'cannot be opened as a video ({_short(exc)})') from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, 'contains no video stream')
    stream = container.streams.video[0]
    reason = _not_a_video(container, stream)
    if reason:
        container.close()
        raise VideoReadError(path, reason)
    ctx = stream.codec_context
    # Frame threads pay off for large frames only; for small clips their start-up
    # costs more than the decoding itself.
    if (ctx.width or 0) * (ctx.height or 0) >= 640 * 360:
        stream.thread_type = 'AUTO'
    else:
        ctx.thread_count = 1
    return container, stream


def _not_a_video(container, stream):
    """Why FFmpeg's reading of a file is not a real video stream, or None."""
    fmt = (container.format.name or '').split(',')[0]
    codec = stream.codec_context.name or ''
    if fmt in _TEXT_FORMATS or codec in _TEXT_CODECS:
        return (f'is a text file, not a video (FFmpeg reads it as {codec or fmt} text '
                'art); give a video file (mp4, avi, webm, mkv, mov)')
    if fmt in _IMAGE_FORMATS or fmt.endswith('_pipe'):
        return f'is a still image ({codec or fmt}), not a video; give a video file'
    return None


def _short(exc):
    # PyAV's errors repeat the errno and the path; FFmpeg's own words are enough.
    if getattr(exc, 'strerror', None):
        return str(exc.strerror).strip()[:200]
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _iter_decoded(path):
    """Yield ``(index, seconds, av.VideoFrame)``; stops at the first decoding error.

    A truncated tail is common in web videos; the frames before it are still good,
    so an error after the first frame ends the video instead of failing it.
    """
    container, stream = _open(path)
    time_base = float(stream.time_base) if stream.time_base is not None else None
    index = 0
    try:
        for frame in container.decode(stream):
            if frame.pts is not None and time_base is not None:
                seconds = frame.pts * time_base
            else:
                seconds = frame.time if frame.time is not None else None
            yield index, seconds, frame
            index += 1
    except Exception as exc:
        if index == 0:
            raise VideoReadError(path, f'cannot be decoded ({_short(exc)})') from None
    finally:
        container.close()


class _RGB:
    """Converts frames to RGB arrays, reusing one swscale context per video.

    ``frame.to_ndarray(format='rgb24')`` builds a new context for every frame,
    which costs more than decoding a small frame.
    """

    def __init__(self):
        from av.video.reformatter import VideoReformatter
        self._reformatter = VideoReformatter()

    def __call__(self, frame):
        rgb = self._reformatter.reformat(frame, format='rgb24').to_ndarray()
        # Phones store portrait clips as landscape frames plus a display rotation; show
        # them upright, as players do (``rotation``: degrees counter-clockwise).
        turns = int(round((getattr(frame, 'rotation', 0) or 0) / 90.0)) % 4
        return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def count_frames(path):
    """Number of decodable frames (decodes the whole video)."""
    n = 0
    for _ in _iter_decoded(path):
        n += 1
    return n


def _collect(path, wanted):
    """Decode and convert only the frame indices in ``wanted`` (sorted, may repeat)."""
    need = set(int(i) for i in wanted)
    to_rgb = _RGB()
    got = {}
    n = 0
    for index, _, frame in _iter_decoded(path):
        n = index + 1
        if index in need:
            got[index] = to_rgb(frame)
            if len(got) == len(need):
                break
    return got, n


def read_video_frames(path, num_frames=None, fps=None):
    """Read frames from a video file as a ``(T, H, W, 3)`` uint8 RGB array.

    Args:
        path: the video file.
        num_frames: sample this many frames uniformly over the whole video
            (``linspace`` over decoded frame indices, rounded; short videos repeat
            frames so that exactly ``num_frames`` come back).
        fps: instead, take one frame every ``1/fps`` seconds of presentation time.
            With neither, every frame is returned.

    Raises:
        VideoReadError: missing file, not a video, or no decodable frame.
    """
    path = str(path)
    if num_frames is not None and fps is not None:
        raise ValueError('give num_frames or fps, not both')
    if num_frames is not None:
        if num_frames < 1:
            raise ValueError(f'num_frames must be >= 1, got {num_frames}')
        container, stream = _open(path)
        declared = int(stream.frames or 0)
        container.close()
        if declared > 0:
            wanted = np.linspace(0, declared - 1, num_frames).round().astype(int)
            got, n = _collect(path, wanted)
            if all(int(i) in got for i in wanted):
                return np.stack([got[int(i)] for i in wanted])
        # The header's frame count was missing or wrong: count, then sample.
        n = count_frames(path)
        if n == 0:
            raise VideoReadError(path, 'contains no decodable frames')
        wanted = np.linspace(0, n - 1, num_frames).round().astype(int)
        got, _ = _collect(path, wanted)
        if not got:
            raise VideoReadError(path, 'contains no decodable frames')
        last = max(got)
        return np.stack([got[min(int(i), last)] if int(i) in got else got[last]
                         for i in wanted])

    frames = []
    to_rgb = _RGB()
    if fps is not None:
        if fps <= 0:
            raise ValueError(f'fps must be > 0, got {fps}')
        step = 1.0 / fps
        next_time = None
        for index, seconds, frame in _iter_decoded(path):
            if seconds is None:
                seconds = index / 25.0  # no timing information at all: assume 25 fps
            if next_time is None:
                next_time = seconds
            if seconds + 1e-6 >= next_time:
                frames.append(to_rgb(frame))
                while next_time <= seconds + 1e-6:
                    next_time += step
    else:
        frames = [to_rgb(frame) for _, _, frame in _iter_decoded(path)]
    if not frames:
        raise VideoReadError(path, 'contains no decodable frames')
    return np.stack(frames)


def video_id(path):
    """The id of a video: its file name without the extension (original names kept)."""
    return osp.splitext(osp.basename(str(path)))[0]


def list_videos(folder_or_listfile):
    """List ``(video_id, path)`` pairs from a folder, a list file or one video file.

    A folder gives its files with a video extension (mp4, avi, webm, mkv, mov; not
    recursive), sorted by id. A text file gives one path per line (blank lines and
    lines starting with ``#`` skipped; relative paths are taken relative to the list
    file's folder when they do not exist as given). The id is the file stem, so
    original names such as ``-_hbPLsZvvo_5_15`` stay as they are.

    Raises:
        FileNotFoundError: the folder or list file does not exist.
        ValueError: two videos share one id.
    """
    src = str(folder_or_listfile)
    if not osp.exists(src):
        raise FileNotFoundError(f'video folder or list file not found: {src}')
    if osp.isdir(src):
        paths = sorted(osp.join(src, name) for name in os.listdir(src)
                       if osp.splitext(name)[1].lower() in VIDEO_EXTENSIONS)
    elif osp.splitext(src)[1].lower() in VIDEO_EXTENSIONS:
        paths = [src]
    else:
        base = osp.dirname(osp.abspath(src))
        paths = []
        with open(src, encoding='utf-8') as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith('#'):
                    continue
                if not osp.isabs(line) and not osp.exists(line):
                    line = osp.join(base, line)
                paths.append(line)
    pairs, seen = [], {}
    for path in paths:
        vid = video_id(path)
        if vid in seen:
            raise ValueError(f'two videos share the id {vid!r}: {seen[vid]} and {path}')
        seen[vid] = path
        pairs.append((vid, path))
    if osp.isdir(src):
        pairs.sort(key=lambda p: p[0])
    return pairs
