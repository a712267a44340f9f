"""Frame reading, frame encoders and feature extraction on real files in tmp_path."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import capdistill  # noqa: F401  (applies the torchvision fix first)
from capdistill.apis.extraction import extract_features
from capdistill.datasets.video_io import VideoReadError, list_videos, read_video_frames
from capdistill.models.backbones.frame_encoders import OpenCLIPVisual, PixelGridEncoder

REPO = Path(__file__).resolve().parents[1]


def write_video(path, num_frames, codec='libx264', size=(48, 64)):
    import av
    container = av.open(str(path), mode='w')
    stream = container.add_stream(codec, rate=10)
    stream.height, stream.width = size
    stream.pix_fmt = 'yuv420p'
    for i in range(num_frames):
        frame = np.zeros(size + (3,), np.uint8)
        frame[:, : 4 + 3 * i] = (200, 30, 30)  # a red bar that grows frame by frame
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


@pytest.fixture()
def video_dir(tmp_path):
    folder = tmp_path / 'raw_videos'
    folder.mkdir()
    write_video(folder / 'clip_a.mp4', 12)
    write_video(folder / '-_hbPLsZvvo_5_15.avi', 7, codec='mpeg4')
    write_video(folder / 'clip_c.mp4', 20)
    (folder / 'corrupt.mp4').write_bytes(np.random.default_rng(0).bytes(2000))
    (folder / 'empty.mp4').write_bytes(b'')
    (folder / 'notes.txt').write_text('not a video')
    return folder


def test_read_and_list(video_dir):
    ids = [vid for vid, _ in list_videos(video_dir)]
    assert ids == sorted(['clip_a', '-_hbPLsZvvo_5_15', 'clip_c', 'corrupt', 'empty'])
    frames = read_video_frames(video_dir / 'clip_a.mp4', num_frames=5)
    assert frames.shape == (5, 48, 64, 3) and frames.dtype == np.uint8
    red = (frames[..., 0] > 100).sum(axis=(1, 2))
    assert np.all(np.diff(red) > 0)  # uniform sampling keeps temporal order
    assert read_video_frames(video_dir / 'clip_c.mp4').shape[0] == 20
    assert read_video_frames(video_dir / 'clip_c.mp4', fps=5).shape[0] == 10
    assert read_video_frames(video_dir / '-_hbPLsZvvo_5_15.avi', num_frames=15).shape[0] == 15
    for name, reason in [('corrupt.mp4', 'cannot be opened'), ('empty.mp4', 'empty'),
                         ('missing.mp4', 'no such file')]:
        with pytest.raises(VideoReadError, match=reason) as info:
            read_video_frames(video_dir / name, num_frames=4)
        assert name in str(info.value) and '\n' not in str(info.value)
    listfile = video_dir.parent / 'list.txt'
    listfile.write_text('raw_videos/clip_a.mp4\n\n# comment\nraw_videos/clip_c.mp4\n')
    assert [v for v, _ in list_videos(listfile)] == ['clip_a', 'clip_c']


def test_extract_features(video_dir, tmp_path):
    out = tmp_path / 'visual' / 'grid8' / 'frame_feature'
    summary = extract_features(video_dir, PixelGridEncoder(grid=8), out, num_frames=15,
                               batch_size=16, workers=1, progress=False)
    assert (summary['total'], summary['done'], summary['skipped'], summary['failed']) == (
        5, 3, 0, 2)
    assert summary['frames'] == 45 and summary['encoder_time'] > 0
    assert summary['wall_encoder_ratio'] >= 1
    for vid in ['clip_a', '-_hbPLsZvvo_5_15', 'clip_c']:
        feats = np.load(out / f'{vid}.npy')
        assert feats.shape == (15, 192) and feats.dtype == np.float32
        assert 0 <= feats.min() and feats.max() <= 1
    assert not list(out.glob('*.tmp'))
    failures = (tmp_path / 'visual' / 'grid8' / 'failures.txt').read_text().splitlines()
    assert sorted(line.split('\t')[0] for line in failures) == ['corrupt', 'empty']
    assert all(len(line.split('\t')) == 3 for line in failures)

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob('*.npy')}
    again = extract_features(video_dir, PixelGridEncoder(grid=8), out, num_frames=15,
                             workers=1, progress=False)
    assert (again['done'], again['skipped'], again['failed']) == (0, 3, 2)
    assert mtimes == {p.name: p.stat().st_mtime_ns for p in out.glob('*.npy')}

    half = extract_features([video_dir / 'clip_a.mp4'], dict(type='PixelGridEncoder', grid=16),
                            tmp_path / 'fp16', num_frames=4, fp16=True, workers=0,
                            progress=False)
    assert half['done'] == 1
    feats = np.load(tmp_path / 'fp16' / 'clip_a.npy')
    assert feats.shape == (4, 768) and feats.dtype == np.float16


@pytest.mark.parametrize('setting,error', [
    (dict(num_frames=0), 'num_frames must be an integer >= 1, got 0'),
    (dict(num_frames=None, fps=0.0), 'fps must be a number > 0, got 0.0'),
    (dict(batch_size=0), 'batch_size must be an integer >= 1, got 0'),
    (dict(workers=-1), 'workers must be an integer >= 0, got -1'),
    (dict(device='cuda:99'), "device 'cuda:99': this machine has"),
    (dict(device='gpu'), "device 'gpu' is not a device name"),
])
def test_settings_that_fail_every_video_stop_before_any(setting, error, video_dir, tmp_path):
    """Not one failure per video (a missing GPU is not an unreadable video): one error,
    and no output folder or failure list written."""
    with pytest.raises(ValueError, match=error):
        extract_features(video_dir, PixelGridEncoder(grid=8), tmp_path / 'out' / 'feats',
                         **dict(dict(workers=0, progress=False), **setting))
    assert not (tmp_path / 'out').exists()


def test_pixel_grid_encoder_is_deterministic():
    frames = np.random.default_rng(1).integers(0, 256, (3, 40, 50, 3), dtype=np.uint8)
    enc = PixelGridEncoder(grid=16)
    a, b = enc.encode_frames(frames), enc.encode_frames(frames)
    assert a.shape == (3, 768) and enc.feature_dim == 768 and enc.input_size == 64
    assert np.array_equal(a.numpy(), b.numpy())
    white = PixelGridEncoder(grid=8).encode_frames(np.full((1, 64, 64, 3), 255, np.uint8))
    assert np.allclose(white.numpy(), 1.0)


def test_cli(video_dir, tmp_path):
    out = tmp_path / 'cli' / 'frame_feature'
    cmd = [sys.executable, str(REPO / 'tools' / 'extract_features.py'), str(video_dir),
           '--encoder', 'pixel-grid16', '--out', str(out), '--num-frames', '6',
           '--workers', '1', '--no-progress']
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, HF_HUB_OFFLINE='1'))
    assert proc.returncode == 0, proc.stderr
    assert np.load(out / 'clip_c.npy').shape == (6, 768)
    assert 'failed 2' in proc.stderr

    missing = [sys.executable, str(REPO / 'tools' / 'extract_features.py'),
               str(tmp_path / 'nowhere'), '--encoder', 'pixel-grid8', '--out', str(out)]
    proc = subprocess.run(missing, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().count('\n') == 0 and 'nowhere' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_missing_clip_weights(tmp_path):
    path = tmp_path / 'model_zoo' / 'clip_model' / 'ViT-B-32.pt'
    with pytest.raises(FileNotFoundError) as info:
        OpenCLIPVisual('ViT-B-32', checkpoint=str(path))
    message = str(info.value)
    assert str(path) in message and 'place the CLIP weights at' in message
    assert '\n' not in message
    with pytest.raises(ValueError, match='allow_random'):
        OpenCLIPVisual('ViT-B-32')


def test_open_clip_random_offline(monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    enc = OpenCLIPVisual('ViT-B-32', allow_random=True)
    frames = np.random.default_rng(2).integers(0, 256, (2, 90, 120, 3), dtype=np.uint8)
    feats = enc.encode_frames(frames)
    assert tuple(feats.shape) == (2, 512) and enc.feature_dim == 512
    assert enc.input_size == 224 and feats.dtype.is_floating_point


def test_timm_encoder_from_a_local_checkpoint_and_in_the_cli(video_dir, tmp_path):
    """A timm backbone (timm's tiny test model) with weights from a local file, whose
    classifier is dropped, used by tools/extract_features.py through --encoder-cfg."""
    import timm
    import torch

    from capdistill.models.backbones.frame_encoders import TimmFrameEncoder
    from capdistill.utils.checkpoint import CheckpointError
    torch.manual_seed(0)
    trained = timm.create_model('test_efficientnet', pretrained=False, num_classes=10)
    path = tmp_path / 'test_efficientnet.pth'
    torch.save({'state_dict': trained.state_dict()}, path)
    enc = TimmFrameEncoder('test_efficientnet', checkpoint=str(path))
    own = enc.model.state_dict()
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in own.items())
    assert not any(k.startswith('classifier') for k in own)
    frames = np.random.default_rng(1).integers(0, 256, (2, 50, 70, 3), dtype=np.uint8)
    assert tuple(enc.encode_frames(frames).shape) == (2, enc.feature_dim)

    other = tmp_path / 'other.pth'
    torch.save(timm.create_model('test_convnext', pretrained=False).state_dict(), other)
    with pytest.raises(CheckpointError, match='do not fit test_efficientnet'):
        TimmFrameEncoder('test_efficientnet', checkpoint=str(other))

    out = tmp_path / 'timm' / 'frame_feature'
    cfg = f"dict(type='TimmFrameEncoder', model_name='test_efficientnet', checkpoint='{path}')"
    cmd = [sys.executable, str(REPO / 'tools' / 'extract_features.py'), str(video_dir),
           '--encoder-cfg', cfg, '--out', str(out), '--num-frames', '4', '--workers', '1',
           '--no-progress']
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, HF_HUB_OFFLINE='1'))
    assert proc.returncode == 0, proc.stderr
    assert np.load(out / 'clip_a.npy').shape == (4, enc.feature_dim)
