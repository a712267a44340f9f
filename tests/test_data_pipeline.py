"""From config to model inputs: the loader keeps each video's references intact."""
import json
import os

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from capdistill.models.captioners.data_preprocessor import CaptionDataPreprocessor
from conftest import write_tiny_config


@pytest.mark.parametrize('split', ['train_dataloader', 'val_dataloader'])
def test_batches_carry_the_right_references(tiny_root, tmp_path, split):
    cfg = Config.fromfile(write_tiny_config(tmp_path / 'cfg.py', tiny_root))
    with DefaultScope.overwrite_default_scope('capdistill'):
        loader = Runner.build_dataloader(cfg[split])
    captions = {}
    for s in json.load(open(os.path.join(tiny_root, 'language', 'tiny_caption.json')))['sentences']:
        captions.setdefault(s['video_id'], []).append(s['caption'])
    batch = CaptionDataPreprocessor()(next(iter(loader)))
    samples = batch['data_samples']
    b = len(samples['video_id'])
    assert batch['inputs']['feats'].shape == (b, 4, 24)
    assert batch['inputs']['teacher_feats'].shape == (b, 4, 48)
    assert batch['inputs']['feats_mask'].all()
    if split == 'val_dataloader':
        assert [captions[v] for v in samples['video_id']] == samples['refs']
    else:
        assert samples['tokens'].shape == (b, 8)
        assert (samples['tokens'][:, 0] == 1).all()


def test_mangled_references_are_refused():
    data = dict(inputs={}, data_samples=dict(video_id=['a', 'b'], refs=[('x', 'y'), ('z', 'w')]))
    with pytest.raises(ValueError, match='TextList'):
        CaptionDataPreprocessor()(data)
