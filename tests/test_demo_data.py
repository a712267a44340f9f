"""The procedurally generated capdemo data set: layout, determinism, held-out combos."""
import json
from pathlib import Path

import numpy as np
import pytest

import capdistill  # noqa: F401
from capdistill.datasets.demo import HELD_OUT, make_demo_dataset
from capdistill.datasets.demo.render import vocabulary
from capdistill.datasets.video_io import read_video_frames


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp('capdemo')
    return make_demo_dataset(str(root), seed=3, num_videos=40, verbose=False)


def test_layout(demo):
    root = Path(demo['root'])
    captions = json.loads((root / 'language' / 'capdemo_caption.json').read_text())
    videos = {v['video_id']: v['split'] for v in captions['videos']}
    assert len(videos) == 40 and all(v.startswith('demo') for v in videos)
    assert len(captions['sentences']) == demo['num_captions'] >= 40 * 5
    assert all(s['caption'].strip() and s['video_id'] in videos for s in captions['sentences'])
    per_video = {}
    for s in captions['sentences']:
        per_video.setdefault(s['video_id'], []).append(s['caption'])
    assert all(len(set(c)) == 5 for c in per_video.values())
    words = {w for s in captions['sentences'] for w in s['caption'].split()}
    assert words <= set(vocabulary()) and len(vocabulary()) <= 100

    all_ids = []
    for split in ('train', 'valid', 'test'):
        ids = json.loads((root / 'splits' / f'capdemo_{split}_list.json').read_text())
        assert ids and all(videos[v] == split for v in ids)
        all_ids += ids
    assert sorted(all_ids) == sorted(videos)

    for vid in list(videos)[:3]:
        frames = read_video_frames(root / 'raw_videos' / f'{vid}.mp4')
        assert frames.shape == (16, 64, 64, 3)
    for key, dim in (('grid16', 768), ('grid8', 192)):
        folder = root / 'visual' / key / 'frame_feature'
        assert len(list(folder.glob('*.npy'))) == 40
        feats = np.load(folder / 'demo00000.npy')
        assert feats.shape == (16, dim) and feats.dtype == np.float32
    text = (root / 'README.txt').read_text()
    assert 'PROCEDURALLY GENERATED' in text and 'yellow' in text


def test_held_out_combinations(demo):
    meta = json.loads(Path(demo['meta_file']).read_text())
    assert 'procedurally generated' in meta['description']

    def combos(vid):
        return {(a, v, obj['action']) for obj in meta['videos'][vid]['objects']
                for a, v, _ in HELD_OUT if obj[a] == v}

    held = set(HELD_OUT)
    for vid, info in meta['videos'].items():
        if info['split'] in ('train', 'valid'):
            assert not combos(vid) & held, vid
    test_combos = set().union(*(combos(v) for v, i in meta['videos'].items()
                                if i['split'] == 'test'))
    assert held <= test_combos


def test_deterministic_and_resumable(demo, tmp_path):
    again = make_demo_dataset(demo['root'], seed=3, num_videos=40, verbose=False)
    assert again['skipped'] and again['timings']['total'] < 1.0

    other = make_demo_dataset(str(tmp_path / 'copy'), seed=3, num_videos=40, verbose=False)
    assert Path(other['caption_file']).read_bytes() == Path(demo['caption_file']).read_bytes()
    for key in ('grid16', 'grid8'):
        for vid in ('demo00000', 'demo00017', 'demo00039'):
            a = np.load(Path(demo['feature_dirs'][key]) / f'{vid}.npy')
            b = np.load(Path(other['feature_dirs'][key]) / f'{vid}.npy')
            assert np.array_equal(a, b)

    different = make_demo_dataset(str(tmp_path / 'seed4'), seed=4, num_videos=12,
                                  verbose=False)
    assert Path(different['caption_file']).read_bytes() != Path(
        demo['caption_file']).read_bytes()


def test_rebuild_with_other_size_drops_the_old_vocabulary(tmp_path):
    root = str(tmp_path / 'capdemo')
    first = make_demo_dataset(root, seed=5, num_videos=12, verbose=False)
    vocab = Path(first['caption_file']).parent / 'vocab.json'
    vocab.write_text('["stale"]')
    Path(str(vocab) + '.meta.json').write_text('{}')
    make_demo_dataset(root, seed=5, num_videos=16, verbose=False)
    assert not vocab.exists() and not Path(str(vocab) + '.meta.json').exists()
