"""Feature extraction on a folder shaped like a real corpus: videos of different sizes,
aspect ratios, frame rates and lengths, with and without audio, under the default
batch settings of tools/extract_features.py."""
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


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp('corpus') / 'mycorpus'
    folder = root / 'raw_videos'
    folder.mkdir(parents=True)
    for seed, (name, spec) in enumerate(CORPUS.items()):
        write_clip(folder / f'{name}.mp4', *spec, seed=seed)
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
    assert sorted(p.stem for p in out.glob('*.npy')) == sorted(CORPUS)
    for name in CORPUS:
        feats = np.load(out / f'{name}.npy')
        assert feats.shape == (15, 768)
        np.testing.assert_allclose(feats, _alone(corpus / 'raw_videos' / f'{name}.mp4', 15, 16),
                                   atol=1e-6, err_msg=name)
    assert 'failed 1 of 7' in proc.stderr
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
    assert (summary['done'], summary['failed']) == (len(CORPUS) - 1, 2)
    assert all(n <= 32 for n, *_ in calls)
    reasons = dict(line.split('\t')[::2] for line in
                   (tmp_path / 'failures.txt').read_text().splitlines())
    assert set(reasons) == {'odd_33x47', 'truncated'}
    assert 'frame encoder failed' in reasons['odd_33x47'] and '47x33' in reasons['odd_33x47']
    for name in CORPUS.keys() - {'odd_33x47'}:
        np.testing.assert_allclose(np.load(out / f'{name}.npy'),
                                   _alone(corpus / 'raw_videos' / f'{name}.mp4', 15, 8),
                                   atol=1e-6, err_msg=name)
