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
