"""One SFTCap (b): every (b) config derives from the canonical base; its switches work."""
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope

from capdistill.registry import MODELS
from conftest import REPO, make_tiny_dataset

BASE = os.path.join(REPO, 'configs/_base_/models/sftcap_distill.py')
B_CONFIGS = ['configs/sftcap/sftcap_l14-to-b32_clip_1xb64-20e_msvd.py',
             'configs/sftcap/sftcap_l14-to-b32_clip_1xb64-20e_msrvtt.py',
             'configs/sftcap/sftcap_l14-to-b32_clip_1xb64-20e_vatex-official.py',
             'configs/sftcap/sftcap_grid16-to-grid8_1xb64-12e_capdemo.py',
             'configs/kd/sftcaphier_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py']
CAPDEMO_B = os.path.join(REPO, B_CONFIGS[3])
ALL_TERMS = {'loss_word', 'loss_obj', 'loss_act', 'loss_obj_concept', 'loss_act_concept'}


@pytest.fixture(scope='module')
def tok(tmp_path_factory):
    root = make_tiny_dataset(str(tmp_path_factory.mktemp('cfg')))
    return dict(type='WordTokenizer', vocab_file=f'{root}/language/vocab.json',
                build_from=dict(ann_file=f'{root}/language/tiny_caption.json',
                                split_file=f'{root}/splits/tiny_train_list.json'))


@pytest.mark.parametrize('path', B_CONFIGS, ids=os.path.basename)
def test_every_b_config_is_the_canonical_base_with_switches(path):
    cfg = Config.fromfile(os.path.join(REPO, path))
    with open(os.path.join(REPO, path)) as f:
        assert "'../_base_/models/sftcap_distill.py'" in f.read()
    base = Config.fromfile(BASE).model
    m = cfg.model
    assert m.type == 'DistillAlgorithm' and set(base.distill_losses) == ALL_TERMS
    on = {k for k, v in m.distill_losses.items() if v is not None}
    assert {'loss_word', 'loss_obj', 'loss_act'} <= on
    for name in on:  # a term means the same thing everywhere: type and weight
        assert m.distill_losses[name].type == base.distill_losses[name].type
        assert m.distill_losses[name].loss_weight == base.distill_losses[name].loss_weight
    assert m.teacher_ckpt  # never a random teacher
    ds = cfg.train_dataloader.dataset
    if 'loss_obj_concept' in on:
        assert ds.get('concepts')
    grade_on = m.student.caption_loss.type == 'QualityWeightedCaptionLoss' \
        and m.student.caption_loss.gamma
    assert bool(ds.get('grade')) == bool(grade_on)


def test_derived_parts_stay_equal_to_their_sources():
    teacher_cfg = Config.fromfile(os.path.join(
        REPO, 'configs/sftcap/sftcap_teacher_grid16_1xb64-12e_capdemo.py'))
    b = Config.fromfile(CAPDEMO_B)
    assert b.model.teacher == teacher_cfg.model
    assert b.model.teacher_ckpt == 'work_dirs/sftcap_teacher_grid16_1xb64-12e_capdemo/best'
    kd = Config.fromfile(os.path.join(REPO, 'configs/kd/_kd_base_capdemo.py'))
    hier = Config.fromfile(os.path.join(REPO, B_CONFIGS[4]))
    assert hier.model.teacher == kd._teacher and hier.model.teacher_ckpt == kd._teacher_ckpt
    for key in ('train_cfg', 'optim_wrapper', 'default_hooks', 'val_dataloader',
                'param_scheduler', 'randomness'):
        assert hier[key] == kd[key], key
    ds = dict(hier.train_dataloader.dataset)
    assert ds.pop('concepts') and ds == kd.train_dataloader.dataset


def _batch(m, weight, b=3, t=5):
    g = torch.Generator().manual_seed(0)
    inputs = {}
    for p in (m.student, m.teacher):
        inputs[p.feature_key] = torch.randn(b, t, p.visual_encoder.in_dim, generator=g)
        inputs[p.feature_key + '_mask'] = torch.ones(b, t, dtype=torch.bool)
    samples = dict(video_id=['a', 'b', 'c'], tokens=torch.tensor([[1, 5, 6, 7, 2, 0]] * b),
                   weight=torch.tensor(weight), refs=[['x']] * b,
                   obj_tokens=torch.tensor([[5, 6, 0]] * b),
                   act_tokens=torch.tensor([[7, 0, 0]] * b))
    return dict(inputs=inputs, data_samples=samples)


def _train_step(tok, weight=(1.0, 0.2, 0.6), **switches):
    cfg = Config.fromfile(CAPDEMO_B)
    cfg.merge_from_dict(switches)
    m = cfg.model
    m.teacher_ckpt, m.allow_random_teacher = None, True
    for p in (m.student, m.teacher):
        p.tokenizer, p.max_len = tok, 4
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('capdistill'):
        model = MODELS.build(m)
    torch.manual_seed(0)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), 0))
    losses = model.train_step(_batch(m, weight), optim)
    return model, {k.split('.')[-1]: float(v.detach()) for k, v in losses.items() if k != 'loss'}


OFF = {
    'obj': {'model.distill_losses.loss_obj': None, 'model.connectors.obj': None},
    'act': {'model.distill_losses.loss_act': None, 'model.connectors.act': None},
    'word': {'model.distill_losses.loss_word': None},
}


@pytest.mark.parametrize('term', sorted(OFF))
def test_switching_a_term_off_removes_it_and_its_connector(tok, term):
    model, terms = _train_step(tok, **OFF[term])
    assert f'loss_{term}' not in terms and len(terms) == 3, terms
    assert term not in model.connectors
    assert all(v > 0 for v in terms.values())


def test_concept_and_grade_switches(tok):
    _, default = _train_step(tok)
    assert set(default) == {'loss_caption', 'loss_word', 'loss_obj', 'loss_act'}
    base = Config.fromfile(BASE).model.distill_losses
    # switched back on (the config turned it off with None, so the dict replaces it)
    _, concept = _train_step(tok, **{'model.distill_losses.loss_obj_concept':
                                     dict(base.loss_obj_concept, _delete_=True),
                                     'model.distill_losses.loss_act_concept':
                                     dict(base.loss_act_concept, _delete_=True)})
    assert {'loss_obj_concept', 'loss_act_concept'} <= set(concept)
    assert concept['loss_obj_concept'] > 0
    # grade off (gamma=0): the student's caption loss ignores the batch's uneven grades,
    # the plain label-smoothed loss (what grade on gives when every grade is 1)
    _, plain = _train_step(tok, **{'model.student.caption_loss.gamma': 0})
    _, ungraded = _train_step(tok, weight=(1.0, 1.0, 1.0))
    assert plain['loss_caption'] == pytest.approx(ungraded['loss_caption'], rel=1e-6)
    assert default['loss_caption'] != pytest.approx(plain['loss_caption'], rel=1e-4)
