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
    assert cfg.train_cfg.type == 'ResumableEpochTrainLoop'


# -- parts from mmengine's MODELS tree ------------------------------------------------
OTHER_SCOPE = 'capdtestlab'  # stands for another OpenMMLab project, e.g. mmpretrain
OTHER_REGISTRY = f'''
from mmengine.registry import MODELS as MMENGINE_MODELS, Registry
MODELS = Registry('model', parent=MMENGINE_MODELS, scope='{OTHER_SCOPE}',
                  locations=['{OTHER_SCOPE}.losses'])
'''
OTHER_LOSSES = f'''
from torch import nn
from {OTHER_SCOPE}.registry import MODELS


@MODELS.register_module()
class TokenL1Loss(nn.Module):
    def forward(self, student, teacher, mask):
        diff = (student.softmax(-1) - teacher.softmax(-1)).abs().sum(-1)
        return (diff * mask).sum() / mask.sum()
'''
WORDS = ['a', 'red', 'ball', 'spins']


def _captioner(in_dim, key, encoder=None):
    return dict(type='Captioner', feature_key=key,
                visual_encoder=dict(type='FeatureProjector', in_dim=in_dim, embed_dim=8),
                encoder=encoder or dict(type='IdentityEncoder'),
                head=dict(type='PrefixLMHead', embed_dim=8, depth=1, num_heads=2),
                tokenizer=dict(type='WordTokenizer', words=WORDS), max_len=4)


@pytest.fixture
def other_scope(tmp_path, monkeypatch):
    """A package that registers its own scope under mmengine's MODELS, like mmpretrain."""
    pkg = tmp_path / OTHER_SCOPE
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    (pkg / 'registry.py').write_text(OTHER_REGISTRY)
    (pkg / 'losses.py').write_text(OTHER_LOSSES)
    monkeypatch.syspath_prepend(str(tmp_path))
    return OTHER_SCOPE


def test_part_from_another_openmmlab_scope(other_scope):
    import torch
    # nothing imports the package beforehand: the scope prefix finds and loads it
    with DefaultScope.overwrite_default_scope('capdistill'):
        algo = MODELS.build(dict(
            type='DistillAlgorithm', student=_captioner(6, 'feats'),
            teacher=_captioner(6, 'feats'), allow_random_teacher=True,
            distill_losses=dict(loss_l1=dict(type=f'{other_scope}.TokenL1Loss'))))
    assert type(algo.distill_losses['loss_l1']).__module__ == f'{other_scope}.losses'
    inputs = dict(feats=torch.randn(2, 3, 6), feats_mask=torch.ones(2, 3, dtype=bool))
    tokens = torch.tensor([[1, 4, 5, 2, 0], [1, 6, 2, 0, 0]])
    losses = algo(inputs, dict(tokens=tokens, video_id=['a', 'b']), mode='loss')
    assert losses['distill.loss_l1'].item() > 0


def test_unknown_name_in_another_scope_keeps_suggestions(other_scope):
    with pytest.raises(UnknownTypeError, match=f'{other_scope}::model') as err:
        LOSSES.build(dict(type=f'{other_scope}.TokenL1Los'))
    assert 'Did you mean: TokenL1Loss' in str(err.value)
    with pytest.raises(UnknownTypeError, match="no registry of scope 'nolab' is loaded"):
        LOSSES.build(dict(type='nolab.TokenL1Loss'))


def test_part_registered_in_models_by_the_user():
    import torch
    from mmengine.registry import MODELS as MMENGINE_MODELS
    from torch import nn

    @MMENGINE_MODELS.register_module(force=True)
    class DoublingEncoderForTest(nn.Module):  # in mmengine's root MODELS
        def forward(self, x, mask):
            return 2 * x, mask

    @MODELS.register_module(force=True)
    class ScaledKLForTest(nn.Module):  # in capdistill's MODELS, not its LOSSES
        def __init__(self, scale):
            super().__init__()
            self.scale = scale

        def forward(self, student, teacher, mask):
            return self.scale * (student - teacher).square().mean()

    student = STUDENTS.build(_captioner(6, 'feats', dict(type='DoublingEncoderForTest')))
    assert isinstance(student.encoder, DoublingEncoderForTest)
    loss = LOSSES.build(dict(type='ScaledKLForTest', scale=3.0))
    assert isinstance(loss, ScaledKLForTest) and loss.scale == 3.0
    x = torch.ones(1, 2)
    assert loss(x, torch.zeros(1, 2), None).item() == 3.0
    # a name that is nowhere still gets the part registry's suggestions
    with pytest.raises(UnknownTypeError, match='Did you mean: IdentityEncoder'):
        BACKBONES.build(dict(type='IdentityEncodr'))
