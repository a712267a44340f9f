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


def _loader_inputs(cfg, split):
    with DefaultScope.overwrite_default_scope('capdistill'):
        loader = Runner.build_dataloader(cfg[split])
    return set(CaptionDataPreprocessor()(next(iter(loader)))['inputs'])


def test_datasets_load_only_the_features_the_model_reads(tmp_path):
    """A student's dataset never opens the teacher's folder (here it is not even there);
    a distillation run's training data carries both, its validation only the student's."""
    import argparse

    from capdistill.engine.setup import load_config
    from conftest import make_tiny_dataset
    root = make_tiny_dataset(str(tmp_path / 'data'), num_videos=6, dims=(('grid8', 24),))
    args = argparse.Namespace(config=write_tiny_config(tmp_path / 'student.py', root,
                                                       model='_student'),
                              cfg_options=None, local_rank=0, work_dir=str(tmp_path / 'w'))
    cfg = load_config(args)
    assert cfg.train_dataloader.dataset.feature_keys == ['feats']
    assert _loader_inputs(cfg, 'train_dataloader') == {'feats', 'feats_mask'}
    raw = Config.fromfile(args.config)  # as written: the missing folder is an error
    with pytest.raises(Exception, match='grid16|teacher_feats'):
        _loader_inputs(raw, 'train_dataloader')
    kd = ("dict(type='DistillAlgorithm', student=_student, teacher=_teacher, "
          "distill_losses=dict(loss_word=dict(type='WordKLLoss')))")
    make_tiny_dataset(root, num_videos=6)  # now with the teacher's features too
    args.config = write_tiny_config(tmp_path / 'kd.py', root, model=kd)
    cfg = load_config(args)
    assert _loader_inputs(cfg, 'train_dataloader') == {
        'feats', 'feats_mask', 'teacher_feats', 'teacher_feats_mask'}
    assert _loader_inputs(cfg, 'val_dataloader') == {'feats', 'feats_mask'}
    # a key the dataset does not have is refused by name
    from capdistill.datasets import CaptionDataset
    with pytest.raises(ValueError, match="feature_keys \\['clip'\\]"):
        CaptionDataset(ann_file='language/tiny_caption.json', data_root=root,
                       feature_dirs=dict(feats='visual/grid8/frame_feature'),
                       tokenizer=cfg.train_dataloader.dataset.tokenizer,
                       split_file='splits/tiny_train_list.json', feature_keys=['clip'])
