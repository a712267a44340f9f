"""On-policy distillation: student-sampled captions scored by the teacher, a divergence on
them; the caption sources; seeded runs that repeat, resume and run under DDP."""
import os.path as osp
import shutil
import signal
import sys
import tempfile

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from capdistill.models.captioners.sampling import CaptionSampler
from capdistill.models.distillers.caption_sources import OnPolicySource
from capdistill.models.losses.divergences import GeneralizedJSDivergence
from capdistill.registry import MODELS
from capdistill.utils import load_full_checkpoint
from capdistill.utils.requirements import ModelConfigError
from conftest import REPO, free_port, make_tiny_dataset, run_tool, write_tiny_config

CONFIG = 'configs/kd/onpolicy_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py'
OP_INPUTS = "inputs=dict(student='op_s_logits', teacher='op_t_logits', mask='op_mask')"


def model_str(onpolicy="dict(lmbda=0.5, seed=3)", loss='GeneralizedJSDivergence'):
    return ("dict(type='DistillAlgorithm', student=_student, teacher=_teacher, "
            f"allow_random_teacher=True, onpolicy={onpolicy}, "
            f"distill_losses=dict(loss_op=dict(type='{loss}', {OP_INPUTS})))")


def build(root, tmp_path, **kw):
    cfg = Config.fromfile(write_tiny_config(tmp_path / 'cfg.py', root, model=model_str(**kw)))
    with DefaultScope.overwrite_default_scope('capdistill'):
        return MODELS.build(cfg.model)


def batch(model, root, vids):
    """A training batch as the data preprocessor gives it (features of both sizes)."""
    def feats(folder):
        x = torch.stack([torch.from_numpy(np.load(
            f'{root}/visual/{folder}/frame_feature/{v}.npy'))[:4] for v in vids])
        return x, torch.ones(x.shape[:2], dtype=torch.bool)
    (s, sm), (t, tm) = feats('grid8'), feats('grid16')
    inputs = dict(feats=s, feats_mask=sm, teacher_feats=t, teacher_feats_mask=tm)
    tok = model.student.tokenizer
    rows = [[tok.bos_id] + tok.encode('a red ball spins') + [tok.eos_id],
            [tok.bos_id] + tok.encode('the blue object') + [tok.eos_id]] * (len(vids) // 2)
    tokens = torch.full((len(rows), 7), tok.pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, :len(r)] = torch.tensor(r)
    return inputs, dict(tokens=tokens, video_id=list(vids))


VIDS = ['vid000', 'vid001', 'vid002', 'vid003', 'vid004', 'vid005']


def test_sampled_rows_teacher_scores_and_gradient(tiny_root, tmp_path):
    model = build(tiny_root, tmp_path)
    model.train()
    inputs, samples = batch(model, tiny_root, VIDS)
    losses = model.loss(inputs, samples)
    assert int(model.onpolicy.step) == 1

    # replay the step's draws independently: the same rows, the same sampled captions
    sampler = CaptionSampler(seed=3)
    g = sampler.generator(0, 0)
    order = torch.randperm(6, generator=g)
    chosen = order[:3].sort().values
    student = model.student
    student.eval()
    out = sampler(student, {k: v[chosen] for k, v in inputs.items()}, generator=g)
    student.train()
    rows, sampled = model.onpolicy.sample_rows(
        student, inputs, samples['tokens'], model.onpolicy.sampler.generator(0, 0))
    assert sampled.tolist() == [i in chosen.tolist() for i in range(6)]
    pad = student.tokenizer.pad_id
    for j, i in enumerate(chosen.tolist()):
        n = int((out['tokens'][j] != pad).sum())
        assert rows[i, :n].tolist() == out['tokens'][j, :n].tolist()
        assert (rows[i, n:] == pad).all()
    for i in set(range(6)) - set(chosen.tolist()):  # ground truth kept as it is
        gt = samples['tokens'][i]
        n = int((gt != pad).sum())
        assert rows[i, :n].tolist() == gt[:n].tolist() and (rows[i, n:] == pad).all()
    assert student.training and not model.teacher.training  # sampled in eval, restored

    model.eval()  # dropout off: two passes over the same rows then agree
    # the loss is the divergence of the two teacher-forced passes on those rows, and its
    # gradient flows only through the student's teacher-forced pass (none through sampling)
    targets = rows[:, 1:]
    mask = targets != pad
    s_logits = student.caption_logits(inputs, rows)
    with torch.no_grad():
        t_logits = model.teacher.caption_logits(inputs, rows)
    expected = GeneralizedJSDivergence()(s_logits, t_logits, mask)
    model.onpolicy.step.zero_()
    model.zero_grad()
    loss = model.loss(inputs, samples)['distill.loss_op']
    assert torch.allclose(loss, expected, atol=1e-6)
    assert torch.isfinite(losses['distill.loss_op'])
    loss.backward()
    got = [p.grad.clone() for p in student.parameters()]
    student.zero_grad()
    expected.backward()
    for a, p in zip(got, student.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)
    assert all(p.grad is None for p in model.teacher.parameters())

    # the next step draws other captions; a different seed draws others again
    rows2, _ = model.onpolicy.sample_rows(student, inputs, samples['tokens'],
                                          model.onpolicy.sampler.generator(1, 0))
    rank1, _ = model.onpolicy.sample_rows(student, inputs, samples['tokens'],
                                          model.onpolicy.sampler.generator(0, 1))
    assert not torch.equal(rows2, rows) and not torch.equal(rank1, rows)


def test_fraction_zero_and_one(tiny_root, tmp_path):
    model = build(tiny_root, tmp_path, onpolicy='dict(lmbda=1.0, max_len=3)')
    inputs, samples = batch(model, tiny_root, VIDS)
    gen = model.onpolicy.sampler.generator(0, 0)
    rows, sampled = model.onpolicy.sample_rows(model.student, inputs, samples['tokens'], gen)
    assert sampled.all() and rows.shape[1] <= 3 + 2  # BOS + at most 3 words + EOS
    source = OnPolicySource(lmbda=0.0)
    rows, sampled = source.sample_rows(model.student, inputs, samples['tokens'], gen)
    gt = samples['tokens']
    assert not sampled.any() and rows.shape[1] == 6  # the longest caption's length
    assert torch.equal(rows, gt[:, :6]) and (gt[:, 6:] == model.student.tokenizer.pad_id).all()


def test_teacher_captions_for_the_other_rows(tiny_root, tmp_path):
    cache = tmp_path / 'beam.json'
    cfg = Config.fromfile(write_tiny_config(
        tmp_path / 'cfg.py', tiny_root,
        model=model_str(onpolicy="dict(lmbda=0.5, off_policy='teacher')")))
    cfg.model.seq_kd = dict(beam_size=2, cache_file=str(cache))
    with DefaultScope.overwrite_default_scope('capdistill'):
        model = MODELS.build(cfg.model)
    inputs, samples = batch(model, tiny_root, VIDS)
    samples['labeled'] = torch.tensor([False] * 6)  # teacher-driven: unlabeled rows count
    out = model.onpolicy(model.student, model.teacher, inputs, samples['tokens'],
                         labeled=samples['labeled'],
                         teacher_tokens=lambda: model._teacher_caption_tokens(
                             inputs, samples, torch.device('cpu')))
    assert cache.is_file() and set(model.teacher_captions.captions) == set(VIDS)
    tok = model.student.tokenizer
    with torch.no_grad():
        beams = model.teacher.generate(inputs, strategy='beam', beam_size=2)
    for i in (~out['op_sampled']).nonzero().flatten().tolist():
        # cut to the student's max_len words, as sequence KD does
        words = tok.encode(model.teacher.tokenizer.decode(beams[i].tolist()))[:6]
        n = len(words) + 2
        assert out['op_mask'][i].sum() == n - 1
        assert out['op_targets'][i, :n - 1].tolist() == words + [tok.eos_id]
    assert out['op_mask'].any(1).all()


def test_unlabeled_ground_truth_rows_leave_the_mask(tiny_root, tmp_path):
    model = build(tiny_root, tmp_path)
    inputs, samples = batch(model, tiny_root, VIDS)
    labeled = torch.tensor([True, False] * 3)
    out = model.onpolicy(model.student, model.teacher, inputs, samples['tokens'],
                         labeled=labeled)
    rows_used = out['op_mask'].any(1)
    assert torch.equal(rows_used, labeled | out['op_sampled'])
    assert model.uses_unlabeled


@pytest.mark.parametrize('onpolicy, loss, match', [
    ('None', 'ReverseKLDivergence', "reads \\['op_mask', 'op_s_logits', 'op_t_logits'\\]"),
    ('dict(lmbda=1.5)', 'ReverseKLDivergence', 'lmbda must lie in'),
    ("dict(off_policy='beam')", 'ReverseKLDivergence', 'off_policy must be one of'),
    ('dict(max_len=9)', 'ReverseKLDivergence', "do not fit the student's max_len=6"),
    ('dict(temperature=0)', 'ReverseKLDivergence', 'temperature must be > 0'),
    ('dict(lambda_=0.5)', 'ReverseKLDivergence', "unknown key\\(s\\) \\['lambda_'\\]"),
])
def test_config_mistakes_stop_the_build(tiny_root, tmp_path, onpolicy, loss, match):
    with pytest.raises(ModelConfigError, match=match):
        build(tiny_root, tmp_path, onpolicy=onpolicy, loss=loss)


def test_onpolicy_without_a_loss_reading_it_is_refused(tiny_root, tmp_path):
    model = ("dict(type='DistillAlgorithm', student=_student, teacher=_teacher, "
             "allow_random_teacher=True, onpolicy=dict(lmbda=0.5), "
             "distill_losses=dict(loss_kd=dict(type='ReverseKLDivergence')))")
    cfg = Config.fromfile(write_tiny_config(tmp_path / 'cfg.py', tiny_root, model=model))
    with DefaultScope.overwrite_default_scope('capdistill'), \
            pytest.raises(ModelConfigError, match='no distill loss reads its tensors'):
        MODELS.build(cfg.model)


def test_capdemo_config_and_readme():
    cfg = Config.fromfile(osp.join(REPO, CONFIG))
    assert cfg.model.onpolicy.lmbda == 0.5 and cfg.model.onpolicy.off_policy == 'ground_truth'
    losses = [v for v in cfg.model.distill_losses.values() if v is not None]
    assert [loss.type for loss in losses] == ['GeneralizedJSDivergence']
    assert losses[0].inputs.student == 'op_s_logits' and losses[0].inputs.mask == 'op_mask'
    readme = open(osp.join(REPO, 'configs', 'kd', 'README.md')).read()
    assert osp.basename(CONFIG) in readme and 'GKD' in readme


# -- runs: repeatable, resumable, distributed ---------------------------------------------
EPOCHS = ['--cfg-options', 'train_cfg.max_epochs=2', 'train_cfg.val_interval=5',
          'default_hooks.checkpoint.save_best=None']


def _train(cfg, work, *extra):
    res = run_tool(['tools/train.py', cfg, '--work-dir', str(work)] + EPOCHS + list(extra))
    assert res.returncode in (0, -signal.SIGKILL), res.stderr[-3000:]
    return res


def _weights(path):
    return load_full_checkpoint(path)['state_dict']


@pytest.fixture(scope='module')
def short_root():
    # short paths: the tools dump the config through yapf, slow on long paths
    short = tempfile.mkdtemp(prefix='op', dir='/tmp')
    yield short, make_tiny_dataset(osp.join(short, 'd'))
    shutil.rmtree(short, ignore_errors=True)


def test_same_seed_same_weights_and_killed_run_resumes(short_root):
    short, root = short_root
    cfg = write_tiny_config(osp.join(short, 'op.py'), root, model=model_str())
    full = osp.join(short, 'full')
    _train(cfg, full)
    wa = _weights(f'{full}/epoch_2.pth')
    assert int(wa['onpolicy.step']) == 12  # 24 captions / batch 4, two epochs

    # a second run of the same seed, killed in epoch 2 (SIGKILL, no cleanup), then resumed
    killing = osp.join(short, 'kill.py')
    with open(killing, 'w') as f:
        f.write(f"_base_ = ['{cfg}']\n"
                "custom_imports = dict(imports=['tests.plugins.kill_hook'], "
                "allow_failed_imports=False)\n"
                "custom_hooks = [dict(type='KillAtIterHook', iteration=9)]\n")
    work = osp.join(short, 'k')
    assert _train(killing, work).returncode == -signal.SIGKILL
    assert osp.isfile(f'{work}/epoch_1.pth') and not osp.exists(f'{work}/epoch_2.pth')
    # same seed, same 6 steps of sampling and training: bitwise the same weights
    w1, wk1 = _weights(f'{full}/epoch_1.pth'), _weights(f'{work}/epoch_1.pth')
    assert int(wk1['onpolicy.step']) == 6
    assert w1.keys() == wk1.keys() and all(torch.equal(w1[k], wk1[k]) for k in w1)
    assert _train(cfg, work, '--resume').returncode == 0
    wk = _weights(f'{work}/epoch_2.pth')
    assert wk.keys() == wa.keys() and int(wk['onpolicy.step']) == 12
    assert max((wa[k].double() - wk[k].double()).abs().max().item() for k in wa) <= 1e-6

    # another sampling seed trains to other weights: the draws matter to the result
    other = osp.join(short, 'seed4')
    _train(cfg, other, 'model.onpolicy.seed=4', 'train_cfg.max_epochs=1')
    wc = _weights(f'{other}/epoch_1.pth')
    assert any(not torch.equal(w1[k], wc[k]) for k in w1)


def test_two_process_ddp_onpolicy_run(short_root):
    short, root = short_root
    cfg = write_tiny_config(osp.join(short, 'ddp.py'), root, model=model_str())
    work = osp.join(short, 'ddp')
    res = run_tool(['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', work,
                    '--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=5',
                    'default_hooks.checkpoint.save_best=None'],
                   env=dict(PYTHON=sys.executable, PORT=str(free_port())))
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert 'Distributed training: True' in log and 'distill.loss_op' in log
    # 24 training captions / (2 processes x batch 4) = 3 steps, counted in the checkpoint
    state = _weights(osp.join(work, 'epoch_1.pth'))
    assert int(state['onpolicy.step']) == 3
