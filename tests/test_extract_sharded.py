"""tools/extract_features.py under torchrun: two CPU processes share the videos, resume
per shard and leave one merged failures file."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from test_extract_features import write_video

REPO = Path(__file__).resolve().parents[1]


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _dist_extract(videos, out):
    cmd = ['bash', str(REPO / 'tools' / 'dist_run.sh'), 'extract_features.py', '2', str(videos),
           '--encoder', 'pixel-grid8', '--out', str(out), '--num-frames', '5', '--workers', '0',
           '--no-progress']
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()), OMP_NUM_THREADS='1',
               HF_HUB_OFFLINE='1')
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def test_two_processes_share_resume_and_merge_failures(tmp_path):
    videos = tmp_path / 'raw_videos'
    videos.mkdir()
    # sorted ids alternate between the shards: a, c, e, g -> rank 0; b, d, f, h -> rank 1
    for name in 'bcefgh':
        write_video(videos / f'{name}.mp4', 6 + ord(name) % 5)
    for name in 'ad':
        (videos / f'{name}.mp4').write_bytes(np.random.default_rng(ord(name)).bytes(1500))
    out = tmp_path / 'visual' / 'grid8' / 'frame_feature'

    proc = _dist_extract(videos, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '[shard 0/2] extracted 3, skipped 0, failed 1 of 4' in proc.stderr
    assert '[shard 1/2] extracted 3, skipped 0, failed 1 of 4' in proc.stderr
    assert 'all 2 shards: extracted 6, skipped 0, failed 2 of 8' in proc.stderr
    assert sorted(p.stem for p in out.glob('*.npy')) == list('bcefgh')
    assert all(np.load(out / f'{n}.npy').shape == (5, 192) for n in 'bcefgh')
    folder = tmp_path / 'visual' / 'grid8'
    merged = (folder / 'failures.txt').read_text().splitlines()
    assert [line.split('\t')[0] for line in merged] == ['a', 'd']
    assert (folder / 'failures.shard-0-of-2.txt').read_text().startswith('a\t')
    assert (folder / 'failures.shard-1-of-2.txt').read_text().startswith('d\t')

    # a rerun does only what is missing: a repaired video of shard 0, a lost file of shard 1
    write_video(videos / 'a.mp4', 4)
    (out / 'f.npy').unlink()
    kept = (out / 'b.npy').stat().st_mtime_ns
    proc = _dist_extract(videos, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '[shard 0/2] extracted 1, skipped 3, failed 0 of 4' in proc.stderr
    assert '[shard 1/2] extracted 1, skipped 2, failed 1 of 4' in proc.stderr
    assert 'all 2 shards: extracted 2, skipped 5, failed 1 of 8' in proc.stderr
    assert (out / 'b.npy').stat().st_mtime_ns == kept
    assert sorted(p.stem for p in out.glob('*.npy')) == list('abcefgh')
    assert [line.split('\t')[0] for line in
            (folder / 'failures.txt').read_text().splitlines()] == ['d']
    assert not (folder / 'failures.shard-0-of-2.txt').exists()
