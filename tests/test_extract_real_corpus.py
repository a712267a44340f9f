"""Feature extraction on a folder shaped like a real corpus: videos of different sizes,
aspect ratios, frame rates and lengths, with and without audio, a phone clip stored
rotated, under the default batch settings of tools/extract_features.py."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import capdistill  # noqa: F401  (applies the torchvision fix first)
from capdistill.apis.extraction import extract_features
from capdistill.datasets.video_io import read_video_frames
from capdistill.models.backbones.frame_encoders import PixelGridEncoder

REPO = Path(__file__).resolve().parents[1]

# name -> (height, width, frames, fps, codec, pixel format, audio)
CORPUS = {
    'landscape_320x240': (240, 320, 20, 30, 'libx264', 'yuv420p', False),
    'portrait_72x128': (128, 72, 12, 25, 'libx264', 'yuv420p', True),
    'odd_33x47': (33, 47, 9, 24, 'libx264', 'yuv444p', False),  # odd sides need 4:4:4
    'one_frame_64x48': (48, 64, 1, 10, 'mpeg4', 'yuv420p', False),
    'long_32x40': (32, 40, 400, 30, 'mpeg4', 'yuv420p', True),
    'square_96_audio': (96, 96, 30, 8, 'libx264', 'yuv420p', True),
}


def write_clip(path, height, width, frames, fps, codec, pix_fmt, audio, seed=0):
    """An mp4 of random colour blocks written by PyAV, optionally with an AAC track."""
    import av
    rng = np.random.default_rng(seed)
    with av.open(str(path), 'w') as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        sound = None
        if audio:
            sound = container.add_stream('aac', rate=16000)
            sound.layout = 'mono'
        for i in range(frames):
            img = np.kron(rng.integers(0, 255, (3, 3, 3)),
                          np.ones((height // 3 + 1, width // 3 + 1, 1)))[:height, :width]
            for packet in video.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8),
                                                                  format='rgb24')):
                container.mux(packet)
            if sound is not None and i * 16000 // fps < 16000 * frames // fps:
                n = 16000 // fps
                wave = (0.1 * np.sin(np.arange(n) / 5.0)).astype(np.float32)[None]
                frame = av.AudioFrame.from_ndarray(wave, format='fltp', layout='mono')
                frame.sample_rate = 16000
                frame.pts = i * n
                for packet in sound.encode(frame):
                    container.mux(packet)
        for stream in (video, sound):
            if stream is not None:
                for packet in stream.encode():
                    container.mux(packet)


def write_phone_clip(path, frames=6):
    """A landscape 64x32 clip whose mp4 track matrix says "turn 90 degrees clockwise",
    as phones store portrait video; its left columns are white, so upright it is a
    32x64 portrait with white rows at the top."""
    import struct

    import av
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('libx264', rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 32, 'yuv420p'
        img = np.zeros((32, 64, 3), np.uint8)
        img[:, :8] = 255
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format='rgb24')):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = bytearray(Path(path).read_bytes())
    at = data.find(b'tkhd')
    assert data[at + 4] == 0  # version 0 box: the matrix sits 44 bytes after the flags
    matrix = at + 4 + 4 + 20 + 8 + 8
    assert struct.unpack('>9i', data[matrix:matrix + 36])[0] == 0x10000
    data[matrix:matrix + 36] = struct.pack('>9i', 0, 0x10000, 0, -0x10000, 0, 0, 0, 0,
                                           0x40000000)
    Path(path).write_bytes(bytes(data))


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp('corpus') / 'mycorpus'
    folder = root / 'raw_videos'
    folder.mkdir(parents=True)
    for seed, (name, spec) in enumerate(CORPUS.items()):
        write_clip(folder / f'{name}.mp4', *spec, seed=seed)
    write_phone_clip(folder / 'phone_rotated.mp4')
    (folder / 'truncated.mp4').write_bytes((folder / 'landscape_320x240.mp4').read_bytes()[:600])
    return root


def _alone(path, num_frames, grid):
    """The features of one video encoded on its own (no other video in the batch)."""
    return PixelGridEncoder(grid=grid).encode_frames(
        read_video_frames(path, num_frames=num_frames)).numpy()


def test_corpus_is_as_described(corpus):
    import av
    for name, (h, w, n, fps, _, _, audio) in CORPUS.items():
        with av.open(str(corpus / 'raw_videos' / f'{name}.mp4')) as c:
            v = c.streams.video[0]
            assert (v.height, v.width, v.frames, int(v.average_rate)) == (h, w, n, fps)
            assert bool(c.streams.audio) == audio
    upright = read_video_frames(corpus / 'raw_videos' / 'phone_rotated.mp4', num_frames=2)
    assert upright.shape == (2, 64, 32, 3)
    assert upright[:, :8].min() > 200 and upright[:, 8:].max() < 50


def test_readme_command_on_a_mixed_corpus(corpus):
    """The README's command, default batch size and workers: every readable video is
    written, each exactly as if encoded alone, and the broken one is named."""
    cmd = [sys.executable, str(REPO / 'tools' / 'extract_features.py'),
           str(corpus / 'raw_videos'), '--encoder', 'pixel-grid16', '--num-frames', '15',
           '--no-progress']
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180,
                          env=dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    out = corpus / 'visual' / 'grid16' / 'frame_feature'
    names = sorted(CORPUS) + ['phone_rotated']
    assert sorted(p.stem for p in out.glob('*.npy')) == sorted(names)
    for name in names:
        feats = np.load(out / f'{name}.npy')
        assert feats.shape == (15, 768)
        np.testing.assert_allclose(feats, _alone(corpus / 'raw_videos' / f'{name}.mp4', 15, 16),
                                   atol=1e-6, err_msg=name)
    assert 'failed 1 of 8' in proc.stderr
    failures = (corpus / 'visual' / 'grid16' / 'failures.txt').read_text().splitlines()
    assert len(failures) == 1 and failures[0].startswith('truncated\t')


def test_batches_never_join_frames_of_different_sizes(corpus, tmp_path):
    """Small batches, several sizes in flight, and one size the encoder cannot take:
    that video is recorded with its reason, every other one is written."""
    calls = []

    class PickyEncoder(PixelGridEncoder):
        def encode_frames(self, frames):
            calls.append(tuple(frames.shape))
            if tuple(frames.shape[1:3]) == (33, 47):
                raise RuntimeError('cannot take 47x33 frames')
            return super().encode_frames(frames)

    out = tmp_path / 'feats'
    summary = extract_features(corpus / 'raw_videos', PickyEncoder(grid=8), out, num_frames=15,
                               batch_size=32, workers=1, progress=False)
    assert (summary['done'], summary['failed']) == (len(CORPUS), 2)
    assert all(n <= 32 for n, *_ in calls)
    reasons = dict(line.split('\t')[::2] for line in
                   (tmp_path / 'failures.txt').read_text().splitlines())
    assert set(reasons) == {'odd_33x47', 'truncated'}
    assert 'frame encoder failed' in reasons['odd_33x47'] and '47x33' in reasons['odd_33x47']
    for name in (CORPUS.keys() | {'phone_rotated'}) - {'odd_33x47'}:
        np.testing.assert_allclose(np.load(out / f'{name}.npy'),
                                   _alone(corpus / 'raw_videos' / f'{name}.mp4', 15, 8),
                                   atol=1e-6, err_msg=name)
