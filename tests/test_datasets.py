"""Dataset readers in every layout, transforms, and the bad-input messages."""
import json
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from capdistill.datasets import DataError, load_captions, load_split
from capdistill.datasets.preprocess import VERSION
from capdistill.datasets.transforms import LoadFrameFeatures, read_feature_file, uniform_indices
from capdistill.registry import DATASETS

init_default_scope('capdistill')
PIPE = [dict(type='LoadFrameFeatures', num_frames=4), dict(type='PackCaptionInputs')]


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(obj, f)
    return path


def _feats(root, name, ids, dim, frames=6, seed=0):
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, 'visual', name, 'frame_feature')
    os.makedirs(folder, exist_ok=True)
    for i, vid in enumerate(ids):
        np.save(os.path.join(folder, f'{vid}.npy'),
                rng.normal(size=(frames + i % 3, dim)).astype(np.float32))
    return f'visual/{name}/frame_feature'


def _tok(root, ann, split=None):
    return dict(type='WordTokenizer', vocab_file=os.path.join(root, 'vocab.json'),
                build_from=dict(ann_file=os.path.join(root, ann),
                                split_file=split and os.path.join(root, split)))


MSVD_IDS = ['-4wsuPCjDBc_5_15', 'zv2RIbUsnSw_335_341', '0lh_UWF9ZP4_62_69', 'a_b_1_2']
MSVD_CAPS = ['a man is playing a guitar', 'a man plays guitar', 'someone is slicing a tomato',
             'a woman cuts a tomato', 'a cat is eating food', 'the cat eats',
             'a dog runs in the park', 'a dog is running']


@pytest.fixture
def msvd(tmp_path):
    root = str(tmp_path)
    meta = [dict(video_id=v, sentence=c) for i, v in enumerate(MSVD_IDS)
            for c in MSVD_CAPS[2 * i:2 * i + 2]]
    meta.append(dict(video_id=MSVD_IDS[0], sentence='a person plays music'))
    _write(f'{root}/language/msvd_caption.json', dict(metadata=meta))
    os.makedirs(f'{root}/splits')
    for split, ids in (('train', MSVD_IDS[:3]), ('test', MSVD_IDS[3:])):
        with open(f'{root}/splits/msvd_{split}_list.pkl', 'wb') as f:
            pickle.dump(ids, f)
    _feats(root, 'clip_b32', MSVD_IDS, 8)
    _feats(root, 'clip_l14', MSVD_IDS, 12)
    return root


def _msvd_ds(root, **kw):
    cfg = dict(type='MSVDDataset', data_root=root, ann_file='language/msvd_caption.json',
               feature_dirs=dict(feats='visual/clip_b32/frame_feature',
                                 teacher_feats='visual/clip_l14/frame_feature'),
               tokenizer=_tok(root, 'language/msvd_caption.json'), max_len=5,
               allow_pickle=True, pipeline=PIPE)
    cfg.update(kw)
    return DATASETS.build(cfg)


def test_msvd_reference_layout_pkl_split_two_feature_sets(msvd):
    ds = _msvd_ds(msvd)  # split file found as splits/msvd_train_list.pkl
    assert len(ds) == 7 and ds.get_video_ids() == MSVD_IDS[:3]  # ids kept as they are
    s = ds[0]
    assert s['inputs']['feats'].shape == (4, 8) and s['inputs']['teacher_feats'].shape == (4, 12)
    assert s['inputs']['feats_mask'].all()
    assert s['data_samples']['tokens'].shape == (7,) and s['data_samples']['weight'] == 1.0
    batch = pseudo_collate([ds[i] for i in range(4)])
    assert torch.stack(batch['inputs']['teacher_feats']).shape == (4, 4, 12)
    test = _msvd_ds(msvd, split='test', test_mode=True)
    assert len(test) == 1 and list(test[0]['data_samples']['refs']) == MSVD_CAPS[6:]


def test_pkl_needs_allow_pickle(msvd):
    with pytest.raises(DataError, match=r'msvd_train_list\.pkl.*allow_pickle=True'):
        _msvd_ds(msvd, allow_pickle=False)


def test_indices_that_keep_nothing_are_named(msvd):
    """indices=0 (a quick run cut too far) used to end in numpy's 'need at least one array
    to concatenate' from inside mmengine."""
    assert len(_msvd_ds(msvd, indices=2)) == 2
    for indices in (0, []):
        with pytest.raises(DataError, match=rf'indices={indices!r} keeps no samples'.replace(
                '[', r'\[').replace(']', r'\]')):
            _msvd_ds(msvd, indices=indices)


def test_refs_of_different_lengths_batch_per_sample(msvd):
    ds = _msvd_ds(msvd, split_file=None, split='train', test_mode=True)
    batch = pseudo_collate([ds[0], ds[1]])
    refs = batch['data_samples']['refs']
    assert len(refs[0]) == 3 and len(refs[1]) == 2 and refs[1][0] == MSVD_CAPS[2]


def test_official_msrvtt_videodatainfo(tmp_path):
    root = str(tmp_path)
    split_of = ['train'] * 6 + ['validate'] * 2 + ['test'] * 3
    videos = [dict(video_id=f'video{i}', split=s, id=i) for i, s in enumerate(split_of)]
    sents = [dict(video_id=f'video{i}', caption=f'a man is cooking dish {j}', sen_id=i * 2 + j)
             for i in range(11) for j in range(2)]
    _write(f'{root}/annotation/videodatainfo.json', dict(videos=videos, sentences=sents))
    ids = [f'video{i}' for i in range(11)]
    fdir = _feats(root, 'clip_b32', ids, 8)
    counts = {}
    for split in ('train', 'valid', 'test'):
        ds = DATASETS.build(dict(type='MSRVTTDataset', data_root=root,
                                 ann_file='annotation/videodatainfo.json', split=split,
                                 feature_dirs=dict(feats=fdir), test_mode=split != 'train',
                                 tokenizer=_tok(root, 'annotation/videodatainfo.json'),
                                 pipeline=PIPE))
        counts[split] = len(ds)
    assert counts == dict(train=12, valid=2, test=3)


def test_vatex_json_h5_features_and_txt_split(tmp_path):
    import h5py
    root = str(tmp_path)
    ann = [dict(videoID=f'v{i}_000010_000020', enCap=[f'a boy is throwing a ball {i}',
                                                         'kids are playing outside'])
           for i in range(3)]
    _write(f'{root}/vatex_caption.json', ann)
    with open(f'{root}/train.txt', 'w') as f:
        f.write('\n'.join(a['videoID'] for a in ann) + '\n')
    with h5py.File(f'{root}/feats.h5', 'w') as f:
        for i, a in enumerate(ann):
            f[a['videoID']] = np.ones((3 + i, 5), np.float32) * i
    ds = DATASETS.build(dict(type='VATEXDataset', data_root=root, ann_file='vatex_caption.json',
                             split_file='train.txt', feature_dirs=dict(feats='feats.h5'),
                             tokenizer=_tok(root, 'vatex_caption.json'), pipeline=PIPE))
    assert len(ds) == 6
    s = ds[5]['inputs']
    assert s['feats'].shape == (4, 5) and s['feats_mask'].tolist() == [True] * 4
    s = ds[0]['inputs']  # 3 stored frames -> padded, masked
    assert s['feats_mask'].tolist() == [True, True, True, False] and float(s['feats'][3].sum()) == 0
    # an h5 file lacking a split id is reported like a missing .npy
    with open(f'{root}/train.txt', 'a') as f:
        f.write('\n')
    ann.append(dict(videoID='nofeat', enCap=['a cat']))
    _write(f'{root}/vatex_caption.json', ann)
    with open(f'{root}/train.txt', 'a') as f:
        f.write('nofeat\n')
    # the captions changed, so the vocabulary built from the old ones is refused
    with pytest.raises(DataError, match='built from another version of'):
        DATASETS.build(dict(type='VATEXDataset', data_root=root, ann_file='vatex_caption.json',
                            split_file='train.txt', feature_dirs=dict(feats='feats.h5'),
                            tokenizer=_tok(root, 'vatex_caption.json'), pipeline=PIPE))
    for name in ('vocab.json', 'vocab.json.meta.json'):
        os.remove(f'{root}/{name}')
    with pytest.raises(DataError, match=r"1 of 4 videos.*nofeat: no feats entry in .*feats\.h5"):
        DATASETS.build(dict(type='VATEXDataset', data_root=root, ann_file='vatex_caption.json',
                            split_file='train.txt', feature_dirs=dict(feats='feats.h5'),
                            tokenizer=_tok(root, 'vatex_caption.json'), pipeline=PIPE))


def test_vatex_duplicate_ids(tmp_path):
    path = _write(f'{tmp_path}/v.json', [dict(videoID='a', enCap=['x']),
                                         dict(videoID='a', enCap=['y'])])
    with pytest.raises(DataError, match=r"v\.json: duplicate video id 'a' \(entries 0 and 1\)"):
        load_captions(path)


@pytest.mark.parametrize('content,match', [
    ('{"sentences": [', 'not valid json'),
    ('{"sentences": [{"video_id": "v1", "caption": "   "}]}',
     r"entry 0 \(video 'v1'\) has an empty caption"),
    ('{"foo": 1}', 'unknown caption layout'),
])
def test_bad_annotation_files(tmp_path, content, match):
    path = tmp_path / 'cap.json'
    path.write_text(content)
    with pytest.raises(DataError, match=match) as err:
        load_captions(str(path))
    assert str(path) in str(err.value)


def test_split_files(tmp_path):
    (tmp_path / 's.json').write_text('["a", "b", "a"]')
    with pytest.raises(DataError, match=r"s\.json: duplicate video ids \['a'\] \(1 in all\)"):
        load_split(str(tmp_path / 's.json'))
    (tmp_path / 's.txt').write_text('a\n\nb\n')
    assert load_split(str(tmp_path / 's.txt')) == ['a', 'b']
    (tmp_path / 's.csv').write_text('a')
    with pytest.raises(DataError, match='unsupported split format'):
        load_split(str(tmp_path / 's.csv'))


def test_missing_features_and_captions(msvd, tmp_path, caplog):
    os.remove(f'{msvd}/visual/clip_l14/frame_feature/{MSVD_IDS[1]}.npy')
    split = _write(f'{msvd}/splits/extra.json', MSVD_IDS[:3] + ['nocaps'])
    with pytest.raises(DataError) as err:
        _msvd_ds(msvd, split_file=split)
    msg = str(err.value)
    assert '2 of 4 videos' in msg and f'{MSVD_IDS[1]}: no teacher_feats file' in msg
    assert 'nocaps: no captions in' in msg and 'skip_missing=True' in msg
    ds = _msvd_ds(msvd, split_file=split, skip_missing=True)
    assert ds.get_video_ids() == [MSVD_IDS[0], MSVD_IDS[2]]


def test_bad_feature_files(tmp_path):
    p = str(tmp_path / 'v.npy')
    np.save(p, np.ones((4, 3), np.float32))
    raw = open(p, 'rb').read()
    open(p, 'wb').write(raw[:-10])  # truncated
    with pytest.raises(DataError, match=r'v\.npy: unreadable feature file'):
        read_feature_file(p)
    open(p, 'wb').write(b'')
    with pytest.raises(DataError, match=r'v\.npy: unreadable'):
        read_feature_file(p)
    open(p, 'wb').write(b'garbage' * 20)
    with pytest.raises(DataError, match=r'v\.npy: unreadable'):
        read_feature_file(p)
    np.save(p, np.zeros((0, 3), np.float32))
    with pytest.raises(DataError, match=r'v\.npy: expected features of shape \(frames, dim\)'):
        read_feature_file(p)
    np.save(p, np.array([[1.0, np.nan]], np.float32))
    with pytest.raises(DataError, match=r'v\.npy: features contain NaN or Inf'):
        read_feature_file(p)
    np.save(p, np.array([[1.0, np.inf]], np.float32))
    with pytest.raises(DataError, match='NaN or Inf'):
        read_feature_file(p)
    np.save(p, np.ones((2, 3), np.float32))
    with pytest.raises(DataError, match=r'v\.npy: feature dim 3, expected 5'):
        read_feature_file(p, expected_dim=5)
    q = str(tmp_path / 'w.npy')
    np.save(q, np.ones((2, 4), np.float32))
    load = LoadFrameFeatures(num_frames=2)
    load(dict(feature_paths=dict(feats=p)))
    with pytest.raises(DataError, match=r'w\.npy: feature dim 4 differs from 3 in .*v\.npy'):
        load(dict(feature_paths=dict(feats=q)))
    for frames in (0, 2.5):  # refused when the pipeline is built, not at the first sample
        with pytest.raises(DataError, match=f'num_frames must be an integer >= 1, got {frames}'):
            LoadFrameFeatures(num_frames=frames)


def test_uniform_sampling_is_linspace():
    assert uniform_indices(10, 4).tolist() == [0, 3, 6, 9]
    assert uniform_indices(3, 5).tolist() == [0, 1, 2]


def test_grades_and_concepts_in_samples(msvd):
    ds = _msvd_ds(msvd, grade='tfidf', concepts=dict(max_objects=2, max_actions=1))
    infos = [ds.get_data_info(i) for i in range(3)]  # the three captions of video 0
    assert max(i['weight'] for i in infos) == 1.0 and all(0 < i['weight'] <= 1 for i in infos)
    s = ds[0]['data_samples']
    assert s['obj_tokens'].dtype == torch.long and s['obj_tokens'].shape == (2,)
    assert s['act_tokens'].shape == (1,)
    tok = ds.tokenizer
    assert [tok.itos[i] for i in s['obj_tokens'].tolist() if i != tok.pad_id] == list(
        s['obj_words'])
    cons = _msvd_ds(msvd, grade='consensus')
    w = [cons.get_data_info(i)['weight'] for i in range(len(cons))]
    assert all(0 <= x <= 1 for x in w) and max(w) == 1.0
    # preprocessing is cached next to the annotations, keyed by the file's hash
    # (beside the consensus grades, asked for by `cons`, and the token ids)
    cache = sorted(f for f in os.listdir(f'{msvd}/language/.capdistill_cache')
                   if f.endswith('.json'))
    assert len(cache) == 2 and cache[1].startswith(f'msvd_caption.v{VERSION}.')
    assert cache[0].startswith(f'msvd_caption.consensus.v{VERSION}.')


def test_dataset_base_configs_load(msvd):
    from mmengine.config import Config
    base = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'configs', '_base_',
                        'datasets')
    for name in ('msvd_clip-l14-b32', 'msrvtt_clip-l14-b32', 'vatex_clip-l14-b32',
                 'msrvtt-official_clip-b32'):
        cfg = Config.fromfile(os.path.join(base, f'{name}.py'))
        assert cfg.test_dataloader.dataset.test_mode
    cfg = Config.fromfile(os.path.join(base, 'msvd_clip-l14-b32.py'))
    ds_cfg = dict(cfg.train_dataloader.dataset, data_root=msvd,
                  tokenizer=_tok(msvd, 'language/msvd_caption.json'))
    ds = DATASETS.build(ds_cfg)
    assert len(ds) == 7 and ds[0]['data_samples']['obj_tokens'].shape == (3,)


def test_browse_and_benchmark_tools(tiny_root, tmp_path):
    from conftest import run_tool, write_tiny_config
    cfg = write_tiny_config(tmp_path / 'cfg.py', tiny_root)
    res = run_tool(['tools/analysis/browse_dataset.py', cfg, '--split', 'train'])
    assert res.returncode == 0, res.stderr
    assert 'videos: 8 in the split' in res.stdout and 'captions per video: min 3' in res.stdout
    assert 'objects (' in res.stdout and 'missing teacher_feats features' in res.stdout
    res = run_tool(['tools/analysis/benchmark_loader.py', cfg, '--steps', '2', '--warmup', '1'])
    assert res.returncode in (0, 1), res.stderr
    assert 'loader / step time' in res.stdout and 'train step' in res.stdout
