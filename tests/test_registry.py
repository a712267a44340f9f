import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

from capdistill.registry import (BACKBONES, LOSSES, MODELS, STUDENTS, TEACHERS, UnknownTypeError,
                                 unknown_type_message)
from conftest import REPO


def test_parts_build_from_their_registries():
    proj = BACKBONES.build(dict(type='FeatureProjector', in_dim=8, embed_dim=16))
    assert proj.proj.in_features == 8
    loss = LOSSES.build(dict(type='WordKLLoss', tau=3.0))
    assert loss.tau == 3.0
    assert TEACHERS.get('Captioner') is STUDENTS.get('Captioner') is MODELS.get('Captioner')


def test_unknown_type_names_registry_and_close_names():
    with pytest.raises(UnknownTypeError) as err:
        LOSSES.build(dict(type='WordKLLos'))
    msg = str(err.value)
    assert 'capdistill::loss' in msg and 'Did you mean: WordKLLoss' in msg


def test_wrong_registry_is_an_error():
    with pytest.raises(UnknownTypeError, match='capdistill::backbone'):
        BACKBONES.build(dict(type='WordKLLoss'))


def test_runner_registry_message_gets_suggestions():
    with DefaultScope.overwrite_default_scope('capdistill'):
        with pytest.raises(KeyError) as err:
            MODELS.build(dict(type='Captoner'))
    hint = unknown_type_message(str(err.value))
    assert hint is not None and 'capdistill::model' in hint and 'Captioner' in hint


def test_config_inheritance_and_overrides():
    cfg = Config.fromfile(
        f'{REPO}/configs/capdemo/wordkd_teacher-to-student_grid16-grid8_1xb64-8e_capdemo.py')
    # from _base_/schedules, overridden by the student config
    assert cfg.optim_wrapper.optimizer.type == 'Adam'
    assert cfg.optim_wrapper.optimizer.lr == 5e-4
    assert cfg.model.type == 'DistillAlgorithm'
    assert cfg.model.student.visual_encoder.in_dim == 192
    assert cfg.model.student.tokenizer == cfg.train_dataloader.dataset.tokenizer
    cfg.merge_from_dict({'model.distill_losses.loss_word.tau': 4.0,
                         'train_cfg.max_epochs': 3})
    assert cfg.model.distill_losses.loss_word.tau == 4.0
    assert cfg.train_cfg.max_epochs == 3
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop'
