"""The SFTCap configs for MSR-VTT's official videodatainfo.json layout build their datasets."""
import json
import os

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

from capdistill.registry import DATASETS
from conftest import REPO

CONFIGS = ['sftcap_shared_clip-b32_1xb64-20e_msrvtt-official.py',
           'sftcap_teacher_clip-l14_1xb64-20e_msrvtt-official.py',
           'sftcap_l14-to-b32_clip_1xb64-20e_msrvtt-official.py']


@pytest.fixture(scope='module')
def official_root(tmp_path_factory):
    """annotation/videodatainfo.json (6/2/3 videos) plus both feature folders."""
    root = tmp_path_factory.mktemp('msrvtt')
    split_of = ['train'] * 6 + ['validate'] * 2 + ['test'] * 3
    videos = [dict(video_id=f'video{i}', split=s, id=i) for i, s in enumerate(split_of)]
    sents = [dict(video_id=f'video{i}', caption=f'a man is cutting an onion in a kitchen {j}',
                  sen_id=i * 2 + j) for i in range(11) for j in range(2)]
    (root / 'annotation').mkdir()
    (root / 'annotation' / 'videodatainfo.json').write_text(
        json.dumps(dict(videos=videos, sentences=sents)))
    rng = np.random.default_rng(0)
    for name, dim in (('clip_b32', 512), ('clip_l14', 768)):
        folder = root / 'visual' / name / 'frame_feature'
        folder.mkdir(parents=True)
        for i in range(11):
            np.save(folder / f'video{i}.npy', rng.normal(size=(4, dim)).astype(np.float32))
    return str(root)


@pytest.mark.parametrize('name', CONFIGS)
def test_official_layout_config_builds_its_splits(name, official_root):
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'sftcap', name))
    sizes = {}
    with DefaultScope.overwrite_default_scope('capdistill'):
        for split in ('train', 'val', 'test'):
            ds_cfg = cfg[f'{split}_dataloader'].dataset
            assert ds_cfg.ann_file == 'annotation/videodatainfo.json' and not ds_cfg.allow_pickle
            ds_cfg.data_root = official_root
            ds_cfg.cache_dir = os.path.join(official_root, 'cache')
            dataset = DATASETS.build(ds_cfg)
            sizes[split] = len(dataset)
            item = dataset[0]['inputs']
            assert item['feats'].shape[-1] == 512
    # train: one sample per caption; val/test: one per video
    assert sizes == dict(train=12, val=2, test=3)


VATEX_CONFIGS = ['sftcap_shared_clip-b32_1xb64-20e_vatex-official.py',
                 'sftcap_teacher_clip-l14_1xb64-20e_vatex-official.py',
                 'sftcap_l14-to-b32_clip_1xb64-20e_vatex-official.py']
VATEX_FILES = dict(train='vatex_training_v1.0.json', val='vatex_validation_v1.0.json',
                   test='vatex_public_test_english_v1.1.json')


@pytest.fixture(scope='module')
def vatex_root(tmp_path_factory):
    """VATEX's three released caption files (4/2/3 videos, 2 English captions each, the
    Chinese ones beside them) and both feature folders; no split files."""
    root = tmp_path_factory.mktemp('vatex')
    (root / 'annotation').mkdir()
    rng = np.random.default_rng(0)
    start = 0
    for split, n in (('train', 4), ('val', 2), ('test', 3)):
        ids = [f'-Ptf_2VRj-V{i}_{i:06d}_{i + 10:06d}' for i in range(start, start + n)]
        start += n
        entries = [dict(videoID=v, enCap=[f'a person plays a guitar on a stage {j}'
                                          for j in range(2)], chCap=['一个人在弹吉他'] * 2)
                   for v in ids]
        (root / 'annotation' / VATEX_FILES[split]).write_text(json.dumps(entries))
        for name, dim in (('clip_b32', 512), ('clip_l14', 768)):
            folder = root / 'visual' / name / 'frame_feature'
            folder.mkdir(parents=True, exist_ok=True)
            for v in ids:
                np.save(folder / f'{v}.npy', rng.normal(size=(4, dim)).astype(np.float32))
    return str(root)


@pytest.mark.parametrize('name', VATEX_CONFIGS)
def test_vatex_official_config_reads_each_split_file(name, vatex_root):
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'sftcap', name))
    sizes, ids = {}, {}
    with DefaultScope.overwrite_default_scope('capdistill'):
        for split in ('train', 'val', 'test'):
            ds_cfg = cfg[f'{split}_dataloader'].dataset
            assert ds_cfg.ann_file == f'annotation/{VATEX_FILES[split]}'
            ds_cfg.data_root = vatex_root
            ds_cfg.cache_dir = os.path.join(vatex_root, 'cache')
            dataset = DATASETS.build(ds_cfg)
            sizes[split] = len(dataset)
            ids[split] = set(dataset.get_video_ids())
            assert dataset[0]['inputs']['feats'].shape[-1] == 512
    # train: one sample per English caption; val/test: one per video, each split its file's
    assert sizes == dict(train=8, val=2, test=3)
    assert not ids['train'] & ids['val'] and not ids['val'] & ids['test']


def test_browse_dataset_takes_cfg_options(official_root):
    from conftest import run_tool
    cfg = os.path.join(REPO, 'configs', 'sftcap', CONFIGS[0])
    res = run_tool(['tools/analysis/browse_dataset.py', cfg, '--split', 'train', '--cfg-options',
                    f'train_dataloader.dataset.data_root={official_root}'])
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'videos: 6 in the split, 6 with captions; captions: 12' in res.stdout


def test_get_flops_takes_cfg_options(tiny_root, tmp_path):
    from conftest import write_tiny_config
    from tools.analysis import get_flops
    cfg = write_tiny_config(tmp_path / 'cfg.py', tiny_root)
    one = get_flops.main([cfg, '--num-frames', '4'])
    two = get_flops.main([cfg, '--num-frames', '4', '--cfg-options', 'model.head.depth=2'])
    assert two['deployed']['params'] > one['deployed']['params']
    assert two['deployed']['forward'] > one['deployed']['forward']


def test_run_demo_moves_every_data_path(tmp_path):
    from capdistill.datasets.demo import config_for_root
    from tools.run_demo import RUNS
    for config in (c for _, stages in RUNS for c in stages):
        assert config_for_root(config, 'data/capdemo', str(tmp_path)) == config
        moved = Config.fromfile(config_for_root(config, str(tmp_path / 'mine'), str(tmp_path)))
        assert 'data/capdemo' not in moved.pretty_text
        for split in ('train', 'val', 'test'):
            assert moved[f'{split}_dataloader'].dataset.data_root == str(tmp_path / 'mine')


def test_run_demo_prints_one_line_per_validation():
    from tools.run_demo import summary_line
    line = ('11/30 20:29:24 - mmengine - INFO - Epoch(val) [3][10/10]    Bleu_1: 0.8123  '
            'Bleu_2: 0.7  Bleu_3: 0.6  Bleu_4: 0.5012  METEOR: 0.3333  ROUGE_L: 0.6789  '
            'CIDEr: 1.2345  data_time: 0.0100  time: 0.1234\n')
    assert summary_line(line) == ('epoch 3 validation: Bleu_4 0.501  METEOR 0.333  '
                                  'ROUGE_L 0.679  CIDEr 1.234')
    assert summary_line('... - mmengine - INFO - Epoch(train) [3][10/66]  loss: 1.2') is None
    assert summary_line('x - mmengine - INFO - Saving checkpoint at 3 epochs') == \
        'Saving checkpoint at 3 epochs'


def test_vatex_compact_config_builds_its_vocabulary_from_the_training_file(vatex_root):
    cfg = Config.fromfile(os.path.join(
        REPO, 'configs', 'sftcap', 'sftcap_l14-to-b32_clip-compact_1xb64-20e_vatex-official.py'))
    tok = cfg.compact_tokenizer
    assert tok.build_from.ann_file.endswith('annotation/' + VATEX_FILES['train'])
    tok.vocab_file = os.path.join(vatex_root, 'annotation', 'vatex_compact_bpe.json')
    tok.build_from.ann_file = os.path.join(vatex_root, 'annotation', VATEX_FILES['train'])
    with DefaultScope.overwrite_default_scope('capdistill'):
        for split in ('train', 'test'):
            ds_cfg = cfg[f'{split}_dataloader'].dataset
            ds_cfg.update(data_root=vatex_root, cache_dir=os.path.join(vatex_root, 'cache'),
                          tokenizer=tok)
            dataset = DATASETS.build(ds_cfg)
            # the training file's words (all its videos), not CLIP's 49,408 tokens
            assert 10 < dataset.tokenizer.vocab_size < 1000
            assert os.path.isfile(tok.vocab_file)
