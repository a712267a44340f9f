"""Several frozen teachers: own features, checkpoints and caches, named tensors, their
ensemble, build-time errors, and a short real run of the two-teacher capdemo config."""
import argparse
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

from capdistill.models.distillers import DistillConfigError, RecorderError, TeacherChangedError
from capdistill.registry import MODELS
from capdistill.utils.checkpoint import load_full_checkpoint
from capdistill.utils.requirements import MissingBatchKeyError, check_batch_keys
from conftest import REPO

WORDS = ['a', 'red', 'ball', 'spins', 'moves']
TWO = 'configs/kd/twoteachers_teacher-to-student_grid16+grid8-grid8_1xb64-6e_capdemo.py'


def _captioner(in_dim, embed, key, words=WORDS, encoder=True):
    return dict(type='Captioner', feature_key=key,
                visual_encoder=dict(type='FeatureProjector', in_dim=in_dim, embed_dim=embed),
                encoder=dict(type='TransformerEncoder', embed_dim=embed, depth=1, num_heads=2)
                if encoder else dict(type='IdentityEncoder'),
                head=dict(type='PrefixLMHead', embed_dim=embed, depth=1, num_heads=2),
                tokenizer=dict(type='WordTokenizer', words=words), max_len=5)


# two teachers of different widths on different inputs (fine: 10-d, coarse: the
# student's own 6-d features); distinct widths make a swapped feature set fail loudly
TEACHERS = dict(fine=dict(model=_captioner(10, 16, 'teacher_feats'), weight=3.0),
                coarse=dict(model=_captioner(6, 12, 'feats'), weight=1.0))
LOSSES = dict(
    loss_fine=dict(type='WordKLLoss', tau=1.0,
                   inputs=dict(student='s_logits', teacher='t_logits.fine', mask='mask')),
    loss_coarse=dict(type='WordKLLoss', tau=1.0,
                     inputs=dict(student='s_logits', teacher='t_logits.coarse', mask='mask')),
    loss_ens=dict(type='WordKLLoss', tau=1.0,
                  inputs=dict(student='s_logits', teacher='t_logits.ensemble', mask='mask')),
    loss_feat=dict(type='FeatureMSELoss',
                   inputs=dict(student='up(s)', teacher='tc', mask='data.feats_mask')))
WIRING = dict(recorders=dict(s=dict(source='student', module='visual_encoder', output=0),
                             tc=dict(source='teacher.coarse', module='encoder', output=0)),
              connectors=dict(up=dict(type='LinearConnector', in_dim=8, out_dim=12)))


def _algo(teachers=TEACHERS, losses=LOSSES, **kw):
    cfg = dict(type='DistillAlgorithm', student=_captioner(6, 8, 'feats', encoder=False),
               teachers=teachers, allow_random_teacher=True, distill_losses=losses,
               **dict(WIRING, **kw))
    with DefaultScope.overwrite_default_scope('capdistill'):
        return MODELS.build(cfg)


def _batch(b=3, t=4):
    g = torch.Generator().manual_seed(1)
    inputs = dict(feats=torch.randn(b, t, 6, generator=g), feats_mask=torch.ones(b, t, dtype=bool),
                  teacher_feats=torch.randn(b, t, 10, generator=g),
                  teacher_feats_mask=torch.ones(b, t, dtype=bool))
    tokens = torch.tensor([[1, 4, 5, 6, 2, 0, 0], [1, 3, 4, 2, 0, 0, 0], [1, 7, 6, 2, 0, 0, 0]])
    return inputs, dict(tokens=tokens[:b], video_id=[f'v{i}' for i in range(b)])


def _probs(logits, tau=1.0):
    z = logits.detach().double().numpy() / tau
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_each_loss_reads_its_own_teacher_on_its_own_features():
    algo = _algo()
    algo.eval()  # no dropout: the hand-computed terms see the same student
    inputs, samples = _batch()
    losses = algo(inputs, samples, mode='loss')
    tokens = samples['tokens']
    mask = tokens[:, 1:] != 0
    s_logits = algo.student.caption_logits(inputs, tokens)
    fine, coarse = algo.teachers['fine'].model, algo.teachers['coarse'].model
    assert (fine.feature_key, coarse.feature_key) == ('teacher_feats', 'feats')
    with torch.no_grad():
        t_fine = fine.caption_logits(inputs, tokens)
        t_coarse = coarse.caption_logits(inputs, tokens)
    kl = algo.distill_losses['loss_fine']
    want_fine, want_coarse = kl(s_logits, t_fine, mask), kl(s_logits, t_coarse, mask)
    assert not torch.allclose(want_fine, want_coarse)  # a swap of the names would show
    assert torch.allclose(losses['distill.loss_fine'], want_fine, atol=1e-6)
    assert torch.allclose(losses['distill.loss_coarse'], want_coarse, atol=1e-6)
    # the recorder 'teacher.coarse' hooked the coarse teacher's encoder (width 12)
    with torch.no_grad():
        tc = coarse.encoder(*coarse.visual_encoder(inputs['feats'], inputs['feats_mask']))
    tc = tc[0] if isinstance(tc, tuple) else tc
    up = algo.connectors.up(algo.student.visual_encoder(inputs['feats'], inputs['feats_mask'])[0])
    want = algo.distill_losses['loss_feat'](up, tc, inputs['feats_mask'])
    assert torch.allclose(losses['distill.loss_feat'], want, atol=1e-6)
    # every teacher's feature input is required of the training data
    need = algo.required_batch_keys()
    assert "teacher 'fine'" in need['teacher_feats'] and "teacher 'coarse'" in need['feats']


@pytest.mark.parametrize('temperature', [1.0, 2.0])
def test_ensemble_is_the_weighted_mixture(temperature):
    algo = _algo(teacher_ensemble=dict(temperature=temperature))
    inputs, samples = _batch()
    tokens = samples['tokens']
    out = algo._teacher_tensors(inputs, samples, tokens, tokens[:, 1:] != 0)
    z1, z2 = out['t_logits.fine'], out['t_logits.coarse']
    want = (3 * _probs(z1, temperature) + 1 * _probs(z2, temperature)) / 4
    # a loss at tau = the ensemble temperature sees exactly the mixture
    got = _probs(out['t_logits.ensemble'], temperature)
    assert np.allclose(got, want, atol=1e-6) and np.allclose(got.sum(-1), 1)
    if temperature == 1.0:  # ... and at temperature 1 the entries are its log-probabilities
        assert np.allclose(np.exp(out['t_logits.ensemble'].double().numpy()), want, atol=1e-6)


def test_every_teacher_frozen_outside_the_module_tree_and_checksummed():
    algo = _algo(teacher_check_interval=1)
    algo.train()
    assert not any(k.startswith('teacher') for k in algo.state_dict())
    teacher_params = {id(p) for t in algo.teachers for p in t.model.parameters()}
    assert not teacher_params & {id(p) for p in algo.parameters()}
    losses = algo(*_batch(), mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    for t in algo.teachers:
        assert not t.model.training
        assert all(not p.requires_grad and p.grad is None for p in t.model.parameters())
    algo.to(torch.float64)  # moved: checksums follow, nothing changed
    assert next(algo.teachers['coarse'].model.parameters()).dtype == torch.float64
    algo.check_teacher()
    algo.to(torch.float32)
    with torch.no_grad():
        next(algo.teachers['coarse'].model.parameters()).add_(1e-3)
    with pytest.raises(TeacherChangedError, match="teacher weights of teacher 'coarse' changed"):
        algo.check_teacher()
    algo2 = _algo()
    algo2.teachers['fine'].model.requires_grad_(True)
    with pytest.raises(TeacherChangedError, match="Teacher 'fine' was unfrozen"):
        algo2.check_teacher()


def test_teacher_cache_is_kept_per_teacher(tmp_path, monkeypatch):
    cache = tmp_path / 'cache'
    algo = _algo(teacher_cache=dict(cache_dir=str(cache), topk=None))
    algo.eval()
    first = algo(*_batch(), mode='loss')
    assert sorted(os.listdir(cache)) == ['coarse', 'fine']
    for name in ('fine', 'coarse'):  # each folder tied to its own teacher
        assert (cache / name / 'teacher.json').is_file()
        assert len([f for f in os.listdir(cache / name) if f.endswith('.safetensors')]) == 3

    algo(*_batch(), mode='loss')  # the first batch read is checked against the teachers
    assert all(t.cache.verified_batches == 1 for t in algo.teachers)

    def no_teacher(*a, **k):
        raise AssertionError('a teacher ran although its outputs are cached')

    for t in algo.teachers:
        monkeypatch.setattr(t.model, 'caption_logits', no_teacher)
    second = algo(*_batch(), mode='loss')
    for k in first:
        assert torch.allclose(first[k], second[k], atol=1e-5), k


def _ckpt(tmp_path):
    with DefaultScope.overwrite_default_scope('capdistill'):
        model = MODELS.build(_captioner(6, 12, 'feats'))
    path = tmp_path / 'coarse.pth'
    torch.save(dict(state_dict=model.state_dict()), path)
    return str(path), model


def test_teacher_checkpoints_load_each_teacher(tmp_path):
    path, model = _ckpt(tmp_path)
    algo = _algo(teachers=dict(TEACHERS, coarse=dict(TEACHERS['coarse'], ckpt=path)))
    for k, v in model.state_dict().items():
        assert torch.equal(algo.teachers['coarse'].model.state_dict()[k], v)
    assert algo.teachers['coarse'].ckpt == path and algo.teachers['fine'].ckpt is None


@pytest.mark.parametrize('change, error, match', [
    (dict(losses=dict(loss_x=dict(type='WordKLLoss', inputs=dict(
        student='s_logits', teacher='t_logits.medium', mask='mask')))),
     DistillConfigError, r"t_logits\.medium: there is no teacher 'medium' \(teachers: fine, "
                         r"coarse, ensemble\)"),
    (dict(losses=dict(loss_x=dict(type='WordKLLoss'))),
     DistillConfigError, r"reads t_logits but there are 2 teachers.*t_logits\.ensemble"),
    (dict(losses=dict(loss_x=dict(type='FeatureMSELoss', inputs=dict(
        student='s_hidden', teacher='t_hidden.ensemble')))),
     DistillConfigError, r'only t_logits has an ensemble'),
    (dict(recorders=dict(t=dict(source='teacher', module='encoder'))),
     RecorderError, r"source must be one of \['student', 'teacher.coarse', 'teacher.fine'\]"),
    (dict(teachers=dict(TEACHERS, ensemble=TEACHERS['fine'])),
     DistillConfigError, r"model.teachers.ensemble: a teacher name must be"),
    (dict(teachers=dict(fine=dict(TEACHERS['fine'], ckpt_file='x.pth'))),
     DistillConfigError, r"model.teachers.fine: unknown key\(s\) \['ckpt_file'\]"),
    (dict(teacher=_captioner(10, 16, 'teacher_feats')),
     DistillConfigError, r'either teacher=.*or teachers='),
    # a teacher on another vocabulary cannot be compared token by token ...
    (dict(teachers=dict(TEACHERS, coarse=dict(model=_captioner(6, 12, 'feats',
                                                              words=WORDS + ['cube'])))),
     DistillConfigError, r"distill loss 'loss_coarse' compares teacher and student token by "
                         r"token, but their vocabularies differ.*teacher 'coarse'.*"
                         r"model.teachers.coarse.model the same tokenizer"),
])
def test_build_errors_are_one_line(change, error, match):
    kw = dict(change)
    if 'recorders' in kw:
        kw['losses'] = {}
    with pytest.raises(error, match=match) as info:
        _algo(**kw)
    assert '\n' not in str(info.value)


def test_other_vocabulary_is_fine_for_feature_terms_and_checkpoints_are_required(tmp_path):
    # ... but may teach through features
    other = dict(model=_captioner(6, 12, 'feats', words=WORDS + ['cube']))
    algo = _algo(teachers=dict(TEACHERS, coarse=other),
                 losses=dict(loss_feat=LOSSES['loss_feat']))
    assert set(algo(*_batch(), mode='loss')) == {'student.loss_caption', 'distill.loss_feat'}
    cfg = dict(type='DistillAlgorithm', student=_captioner(6, 8, 'feats', encoder=False),
               teachers=TEACHERS, distill_losses=dict(loss_fine=LOSSES['loss_fine']))
    with DefaultScope.overwrite_default_scope('capdistill'), pytest.raises(
            DistillConfigError, match=r'model\.teachers\.fine\.ckpt is not set.*'
                                      r'allow_random_teacher'):
        MODELS.build(cfg)
    missing = str(tmp_path / 'work_dirs' / 'nothing' / 'epoch_8.pth')
    with DefaultScope.overwrite_default_scope('capdistill'), pytest.raises(
            FileNotFoundError, match=r'model\.teachers\.fine\.ckpt'):
        MODELS.build(dict(cfg, teachers=dict(fine=dict(TEACHERS['fine'], ckpt=missing))))


def test_a_feature_input_the_data_lacks_stops_the_first_step():
    teachers = dict(TEACHERS, coarse=dict(TEACHERS['coarse'], feature_key='grid4'))
    algo = _algo(teachers=teachers, losses=dict(loss_coarse=LOSSES['loss_coarse']),
                 dry_run=False)
    assert algo.teachers['coarse'].feature_key == 'grid4'
    inputs, samples = _batch()
    with pytest.raises(MissingBatchKeyError, match=r"teacher 'coarse' \(its feature_key; add "
                                                   r"'grid4' to train_dataloader\.dataset\."
                                                   r"feature_dirs\) needs the batch key 'grid4'"):
        check_batch_keys(algo.required_batch_keys(), samples, inputs)
    with pytest.raises(MissingBatchKeyError, match="'grid4'"):
        algo(inputs, samples, mode='loss')


def test_single_teacher_form_keeps_its_plain_names():
    cfg = dict(type='DistillAlgorithm', student=_captioner(6, 8, 'feats', encoder=False),
               teacher=_captioner(10, 16, 'teacher_feats'), allow_random_teacher=True,
               recorders=dict(t=dict(source='teacher.teacher', module='encoder', output=0)),
               distill_losses=dict(loss_a=dict(type='WordKLLoss'),
                                   loss_b=dict(type='WordKLLoss', inputs=dict(
                                       student='s_logits', teacher='t_logits.teacher',
                                       mask='mask'))))
    with DefaultScope.overwrite_default_scope('capdistill'):
        algo = MODELS.build(cfg)
    assert algo.teachers.names == ['teacher'] and algo.recorders.source('t') == 'teacher'
    assert algo.loss_inputs['loss_a'] == algo.loss_inputs['loss_b']  # both read 't_logits'
    losses = algo(*_batch(), mode='loss')
    assert torch.equal(losses['distill.loss_a'], losses['distill.loss_b'])


def test_two_teacher_capdemo_config_trains_with_the_runner(tmp_path):
    """The capdemo config on a 20-video build of its own, 2 iterations, random teachers
    allowed."""
    from capdistill.datasets.demo import config_for_root, make_demo_dataset
    from capdistill.engine.setup import build_runner, load_config
    root = make_demo_dataset(str(tmp_path / 'capdemo'), seed=2, num_videos=20,
                             verbose=False)['root']
    config = config_for_root(osp.join(REPO, TWO), root, str(tmp_path))
    args = argparse.Namespace(
        config=config, work_dir=str(tmp_path / 'work'), local_rank=0,
        cfg_options={'model.teachers.grid16.ckpt': None, 'model.teachers.grid8.ckpt': None,
                     'model.allow_random_teacher': True,
                     'train_dataloader.dataset.indices': 16,
                     'train_dataloader.batch_size': 8, 'train_cfg.max_epochs': 1,
                     'default_hooks.logger.interval': 1})
    cfg = load_config(args)
    # training loads both teachers' feature sets, test only the student's
    assert cfg.train_dataloader.dataset.feature_keys == ['feats', 'teacher_feats']
    assert cfg.test_dataloader.dataset.feature_keys == ['feats']
    runner = build_runner(cfg)
    runner.train()
    model = runner.model
    assert runner.iter == 2 and model.teachers.names == ['grid16', 'grid8']
    assert [t.feature_key for t in model.teachers] == ['teacher_feats', 'feats']
    model.check_teacher()
    log = open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    assert 'distill.loss_word' in log
    ckpt = load_full_checkpoint(osp.join(cfg.work_dir, 'epoch_1.pth'))
    assert not any(k.startswith('teacher') for k in ckpt['state_dict'])


def test_forward_kl_to_the_ensemble_trains_like_weighted_per_teacher_terms():
    """sum_i w_i KL(p_i || q) = KL(sum_i w_i p_i || q) + const: the same gradient at
    tau = the ensemble temperature (the README's reason the two forms train alike)."""
    algo = _algo(teacher_ensemble=dict(temperature=2.0), losses=dict(
        {k: dict(v, tau=2.0) for k, v in LOSSES.items() if k != 'loss_feat'}))
    algo.eval()
    losses = algo(*_batch(), mode='loss')
    params = [p for p in algo.student.parameters()]
    ens = torch.autograd.grad(losses['distill.loss_ens'], params, retain_graph=True)
    per = torch.autograd.grad(0.75 * losses['distill.loss_fine']
                              + 0.25 * losses['distill.loss_coarse'], params)
    assert any(g.abs().sum() > 0 for g in ens)
    for a, b in zip(ens, per):
        assert torch.allclose(a, b, atol=1e-5)
    assert losses['distill.loss_ens'] < 0.75 * losses['distill.loss_fine'] \
        + 0.25 * losses['distill.loss_coarse']  # ... the values differ by the constant


def test_kd_table_trains_the_grid8_teacher_before_the_two_teacher_row(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'run_kd_table', osp.join(REPO, 'tools/analysis/run_kd_table.py'))
    kd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kd)
    rows, pending, _ = kd.resolve_rows()
    assert 'twoteachers' not in {p['key'] for p in pending}
    rows = kd.select(rows, ['twoteachers'])
    assert {'teacher', 'teacher_grid8', 'scratch', 'twoteachers'} == {r['key'] for r in rows}
    by_key = kd.describe(rows, {})
    grid8 = 'work_dirs/baseline_teacher_grid8_1xb64-8e_capdemo/epoch_8.pth'
    assert grid8 in by_key['twoteachers']['needs']
    if osp.isfile(osp.join(REPO, grid8)):
        return  # trained already: nothing to wait for
    jobs, blocked = kd.plan(rows, by_key, [0], str(tmp_path), [])
    named = {j.name: j for j in jobs}
    assert not blocked and named['teacher_grid8 training'] in named['twoteachers seed 0'].deps


def test_scst_kd_teacher_is_the_shared_frozen_teacher(tiny_root):
    from capdistill.models.distillers import Teachers
    refs = dict(ann_file=f'{tiny_root}/language/tiny_caption.json',
                split_file=f'{tiny_root}/splits/tiny_train_list.json')
    with DefaultScope.overwrite_default_scope('capdistill'):
        model = MODELS.build(dict(
            type='SelfCriticalCaptioner', captioner=_captioner(6, 8, 'feats', encoder=False),
            references=refs, kd=dict(teacher=_captioner(10, 16, 'teacher_feats'),
                                     allow_random_teacher=True)))
    assert isinstance(model.teachers, Teachers) and model.teacher is model.teachers.primary.model
    assert not any(k.startswith('teacher') for k in model.state_dict())
    model.train()
    assert not model.teacher.training
    model.check_teacher()
    with torch.no_grad():
        next(model.teacher.parameters()).mul_(1.5)
    with pytest.raises(TeacherChangedError, match='teacher weights changed'):
        model.check_teacher()
