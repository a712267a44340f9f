"""Self-critical sequence training: the CIDEr-D reward, its gradient, KD, a Runner run."""
import json
import os
import os.path as osp
import shutil
import sys
import tempfile

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from pycocoevalcap.cider.cider import Cider

from capdistill.apis.export import export_student, load_exported_student
from capdistill.models.captioners.scst import CiderDReward
from capdistill.registry import MODELS
from capdistill.utils.checkpoint import CheckpointError
from conftest import REPO, free_port, make_tiny_dataset, run_tool, write_tiny_config

DISTILL = ("dict(type='DistillAlgorithm', student=_student, teacher=_teacher, "
           "allow_random_teacher=True, distill_losses=dict(loss_kd=dict(type='WordKLLoss')))")


def refs_cfg(root, **kw):
    return dict(ann_file=f'{root}/language/tiny_caption.json',
                split_file=f'{root}/splits/tiny_train_list.json', **kw)


def train_ids(root):
    with open(f'{root}/splits/tiny_train_list.json') as f:
        return json.load(f)


def student_cfg(root, dropout=0.0):
    tok = dict(type='WordTokenizer', vocab_file=f'{root}/language/vocab.json',
               build_from=dict(ann_file=f'{root}/language/tiny_caption.json',
                               split_file=f'{root}/splits/tiny_train_list.json'))
    return dict(type='Captioner', feature_key='feats',
                visual_encoder=dict(type='FeatureProjector', in_dim=24, embed_dim=32,
                                    dropout=dropout),
                encoder=dict(type='IdentityEncoder'),
                head=dict(type='PrefixLMHead', embed_dim=32, depth=1, num_heads=2,
                          dropout=dropout),
                tokenizer=tok, max_len=6)


def batch_of(root, vids, key='feats', folder='grid8'):
    feats = torch.stack([torch.from_numpy(np.load(
        f'{root}/visual/{folder}/frame_feature/{v}.npy'))[:4] for v in vids])
    return {key: feats, f'{key}_mask': torch.ones(feats.shape[:2], dtype=torch.bool)}


def build_scst(root, tmp_path, **kw):
    cfg = dict(type='SelfCriticalCaptioner', captioner=student_cfg(root),
               references=refs_cfg(root, cache_file=str(tmp_path / 'df.json')), **kw)
    with DefaultScope.overwrite_default_scope('capdistill'):
        return MODELS.build(cfg)


# -- the reward ---------------------------------------------------------------------
def test_reward_is_pycocoevalcap_cider_with_training_document_frequencies(tiny_root,
                                                                          tmp_path):
    vids = train_ids(tiny_root)
    reward = CiderDReward(**refs_cfg(tiny_root, cache_file=str(tmp_path / 'df.json')))
    hyps = ['a red ball moves left', 'the green object', 'a blue shape spins',
            'a ball bounces', 'yellow yellow yellow', 'the red object moves right',
            'a green shape', 'a thing']
    ours = reward(vids, hyps)
    # every training video scored at once: pycocoevalcap's batch df is the split's df
    gts = {i: reward.refs[v] for i, v in enumerate(vids)}
    res = {i: [h] for i, h in enumerate(hyps)}
    _, golden = Cider().compute_score(gts, res)
    np.testing.assert_allclose(ours, golden, rtol=1e-12)
    assert len(set(np.round(ours, 6))) > 4
    # a sub-batch keeps the split's df (pycocoevalcap on the sub-batch would not)
    sub = reward(vids[:2], hyps[:2])
    np.testing.assert_allclose(sub, ours[:2], rtol=1e-12)
    _, batch_df = Cider().compute_score({0: gts[0], 1: gts[1]}, {0: res[0], 1: res[1]})
    assert not np.allclose(sub, batch_df)


def test_document_frequencies_are_cached_and_keyed_to_the_files(tiny_root, tmp_path):
    cache = tmp_path / 'df.json'
    vids = train_ids(tiny_root)
    first = CiderDReward(**refs_cfg(tiny_root, cache_file=str(cache)))
    score = first(vids[:1], ['a red thing'])  # 'red' carries most of it
    assert cache.is_file()
    data = json.loads(cache.read_text())
    assert data['num_docs'] == len(vids) and data['doc_freq']['red'] == 2
    # a second reward reads the file instead of recounting: edit it and see the effect
    data['doc_freq']['red'] = len(vids)
    cache.write_text(json.dumps(data))
    again = CiderDReward(**refs_cfg(tiny_root, cache_file=str(cache)))
    assert again(vids[:1], ['a red thing'])[0] < 0.5 * score[0]
    # another split (another key) ignores that cache and recounts
    split = tmp_path / 'split.json'
    split.write_text(json.dumps(vids[:4]))
    other = CiderDReward(ann_file=f'{tiny_root}/language/tiny_caption.json',
                         split_file=str(split), cache_file=str(cache))
    other.document_frequencies()
    assert json.loads(cache.read_text())['num_docs'] == 4


def test_unknown_video_is_one_clear_error(tiny_root, tmp_path):
    reward = CiderDReward(**refs_cfg(tiny_root, cache_file=str(tmp_path / 'df.json')))
    with pytest.raises(KeyError, match="video 'vid011' of the batch has no references"):
        reward(['vid011'], ['a ball'])


# -- the policy gradient ------------------------------------------------------------
def expected_reward(model, inputs, vids, seed, n=16):
    """Mean CIDEr-D of n samples per video, with a fixed generator."""
    sampler = model.sampler
    old, sampler.num_samples = sampler.num_samples, n
    try:
        out = sampler(model.captioner, inputs, generator=torch.Generator().manual_seed(seed))
    finally:
        sampler.num_samples = old
    return model.rewards([v for v in vids for _ in range(n)], out['ids']).mean()


def test_reward_gradient_raises_the_sampled_captions_cider(tiny_root, tmp_path):
    torch.manual_seed(0)
    model = build_scst(tiny_root, tmp_path, sampler=dict(num_samples=4, seed=0))
    vids = train_ids(tiny_root)
    inputs = batch_of(tiny_root, vids)
    samples = dict(video_id=vids)
    # one small step: sum_n A_n log p(w_n) of that step's samples must go up
    model.train()
    generator_step = int(model.sample_step)
    loss = model.loss(inputs, samples)['loss_scst']
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 1e-3 * p.grad
    model.sample_step.fill_(generator_step)  # the same samples again
    assert model.loss(inputs, samples)['loss_scst'].item() < loss.item()
    # a few dozen steps: the expected CIDEr-D of sampled captions rises clearly
    before = expected_reward(model, inputs, vids, seed=123)
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        optim.zero_grad()
        model.loss(inputs, samples)['loss_scst'].backward()
        optim.step()
    after = expected_reward(model, inputs, vids, seed=123)
    assert after > before + 0.3, (before, after)


def test_mean_baseline_and_kd_term(tiny_root, tmp_path):
    teacher = dict(student_cfg(tiny_root), feature_key='teacher_feats',
                   visual_encoder=dict(type='FeatureProjector', in_dim=48, embed_dim=32,
                                       dropout=0.0))
    kd = dict(teacher=teacher, loss=dict(type='GeneralizedJSDivergence', beta=0.5),
              weight=0.5)
    with pytest.raises(ValueError, match='no teacher_ckpt given'):
        build_scst(tiny_root, tmp_path, kd=kd)
    with pytest.raises(ValueError, match="baseline='mean' needs"):
        build_scst(tiny_root, tmp_path, baseline='mean')
    torch.manual_seed(0)
    model = build_scst(tiny_root, tmp_path, baseline='mean',
                       sampler=dict(num_samples=3, seed=1),
                       kd=dict(kd, allow_random_teacher=True))
    assert not any(k.startswith('teacher') for k in model.state_dict())
    vids = train_ids(tiny_root)[:4]
    inputs = dict(batch_of(tiny_root, vids),
                  **batch_of(tiny_root, vids, 'teacher_feats', 'grid16'))
    model.train()
    assert not model.teacher.training
    losses = model.loss(inputs, dict(video_id=vids))
    assert {'loss_scst', 'loss_kd', 'reward_sample', 'advantage_pos'} <= set(losses)
    assert 'reward_greedy' not in losses
    # the kd term, recomputed by hand on the same samples
    out = model.sampler(model.captioner, inputs, generator=model.sampler.generator(0))
    s = model.captioner.caption_logits(out['inputs'], out['tokens'])
    t = model.teacher.caption_logits(out['inputs'], out['tokens'])
    q, p = torch.softmax(s, -1), torch.softmax(t, -1)
    m = 0.5 * (p + q)
    per = 0.5 * (p * (p / m).log()).sum(-1) + 0.5 * (q * (q / m).log()).sum(-1)
    want = 0.5 * per[out['mask']].mean()
    assert losses['loss_kd'].item() == pytest.approx(want.item(), rel=1e-5)
    losses['loss_kd'].backward()
    assert model.captioner.head.word_embed.weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())


def test_caption_loss_mixed_in(tiny_root, tmp_path):
    torch.manual_seed(0)
    model = build_scst(tiny_root, tmp_path, caption_loss_weight=0.5)
    vids = train_ids(tiny_root)[:2]
    tokens = torch.stack([torch.as_tensor(model.tokenizer.encode_padded(c, 6))
                          for c in ('a red ball moves left', 'the red object')])
    samples = dict(video_id=vids, tokens=tokens)
    inputs = batch_of(tiny_root, vids)
    losses = model.loss(inputs, samples)
    own = model.captioner.loss(inputs, samples)['loss_caption']
    assert losses['loss_caption'].item() == pytest.approx(0.5 * own.item(), rel=1e-6)


# -- a real Runner run from a distilled student --------------------------------------
def unformatted(path):
    """The config without yapf formatting of its dumps: with long tmp paths yapf takes
    10-30 s per dump. mmengine 0.10.7's fromfile drops ``format_python_code=False``
    for plain configs, hence the attribute."""
    cfg = Config.fromfile(path)
    object.__setattr__(cfg, '_format_python_code', False)
    return cfg


def test_runner_fine_tunes_a_distilled_student(tiny_root, tmp_path):
    kd_cfg = unformatted(write_tiny_config(tmp_path / 'kd.py', tiny_root, model=DISTILL))
    kd_cfg.work_dir = str(tmp_path / 'kd')
    kd_cfg.train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=5)
    Runner.from_cfg(kd_cfg).train()
    distilled = str(tmp_path / 'kd' / 'epoch_1.pth')
    assert osp.isfile(distilled)

    model = (f"dict(type='SelfCriticalCaptioner', captioner=_student, student_ckpt={distilled!r},"
             f" references=dict(ann_file=data_root + '/language/tiny_caption.json', "
             f"split_file=data_root + '/splits/tiny_train_list.json', "
             f"cache_file={str(tmp_path / 'df.json')!r}), sampler=dict(num_samples=2, seed=0))")
    cfg = unformatted(write_tiny_config(tmp_path / 'scst.py', tiny_root, model=model))
    cfg.work_dir = str(tmp_path / 'scst')
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=1)
    runner = Runner.from_cfg(cfg)
    student_state = {k[8:]: v for k, v in torch.load(distilled, weights_only=False)[
        'state_dict'].items() if k.startswith('student.')}
    for k, v in runner.model.captioner.state_dict().items():
        assert torch.equal(v, student_state[k]), k
    runner.train()
    ckpt = torch.load(tmp_path / 'scst' / 'epoch_1.pth', weights_only=False)
    state = ckpt['state_dict']
    assert int(state['sample_step']) == 6  # 24 training captions, batch 4
    assert all(k.startswith(('captioner.', 'sample_step')) for k in state)
    assert any(not torch.equal(state['captioner.' + k], v) for k, v in student_state.items())
    logs = open(next(p for p in (tmp_path / 'scst').rglob('*.log'))).read()
    assert 'loss_scst' in logs and 'reward_sample' in logs and 'CIDEr' in logs
    # tools/export_student.py's function exports the fine-tuned captioner alone
    st, _ = export_student(cfg, str(tmp_path / 'scst' / 'epoch_1.pth'), str(tmp_path / 'ex'))
    exported = load_exported_student(st).eval()
    runner.model.eval()
    inputs = batch_of(tiny_root, train_ids(tiny_root)[:3])
    assert torch.equal(exported.generate(inputs), runner.model.captioner.generate(inputs))
    # the run's checkpoint seeds a further SCST run (captioner.* keys)
    again = build_scst(tiny_root, tmp_path, student_ckpt=str(tmp_path / 'scst' / 'epoch_1.pth'))
    for k, v in again.captioner.state_dict().items():
        assert torch.equal(v, state['captioner.' + k])

    # testing and captioning need the fine-tuned checkpoint alone, not the one SCST started from
    val = {k[4:]: v.current() for k, v in runner.message_hub.log_scalars.items()
           if k.startswith('val/') and k[4:] in ('Bleu_1', 'Bleu_4', 'METEOR', 'ROUGE_L', 'CIDEr')}
    os.remove(distilled)
    from capdistill.apis import init_captioner
    captioner = init_captioner(cfg, str(tmp_path / 'scst' / 'epoch_1.pth'))
    assert torch.equal(captioner.generate(inputs), runner.model.captioner.generate(inputs))
    from capdistill.apis.onnx_export import export_onnx
    onnx_json = export_onnx(cfg, str(tmp_path / 'scst' / 'epoch_1.pth'), str(tmp_path / 'onnx'))[0]
    assert json.loads(open(onnx_json).read())['model']['type'] == 'Captioner'
    res = run_tool(['tools/test.py', str(tmp_path / 'scst.py'),
                    str(tmp_path / 'scst' / 'epoch_1.pth'), '--work-dir', str(tmp_path / 'test')])
    assert res.returncode == 0, res.stderr[-3000:]
    header, _, values = res.stdout.strip().splitlines()[-3:]
    scores = {h.strip(): float(v) for h, v in zip(header.strip('|').split('|'),
                                                  values.strip('|').split('|'))}
    # the test split is the validation split here: the scores of the run's own validation
    assert len(val) >= 3 and val['Bleu_1'] > 0, val
    assert {k: scores[k] for k in val} == pytest.approx(val, abs=1e-4)

    # resuming needs the run's own checkpoint only, not the (removed) start weights
    from capdistill.engine.setup import build_runner
    cfg.resume, cfg.train_cfg = True, dict(by_epoch=True, max_epochs=2, val_interval=5)
    resumed = build_runner(cfg)
    assert resumed.model.captioner is not None and cfg.model.student_ckpt is None
    resumed.train()
    assert int(resumed.model.sample_step) == 12
    assert osp.isfile(tmp_path / 'scst' / 'epoch_2.pth')
    # a resume that finds no checkpoint yet starts from student_ckpt, as a new run does
    fresh = unformatted(str(tmp_path / 'scst.py'))
    fresh.work_dir, fresh.resume = str(tmp_path / 'scst_new'), True
    with pytest.raises(CheckpointError, match='student_ckpt not found'):
        build_runner(fresh)


def test_scst_configs_name_a_distilled_student():
    folder = osp.join(REPO, 'configs', 'kd')
    names = [n for n in os.listdir(folder) if n.startswith('scst_')]
    assert names
    for name in names:
        cfg = Config.fromfile(osp.join(folder, name))
        assert cfg.model.type == 'SelfCriticalCaptioner'
        assert cfg.model.student_ckpt.startswith('work_dirs/kd_table/')
        base = cfg.model.student_ckpt.split('/')[2]
        assert osp.isfile(osp.join(folder, base + '.py')), base
        assert cfg.model.references.split_file.endswith('capdemo_train_list.json')
        assert cfg.load_from is None


def test_two_process_ddp_scst_run(tmp_path):
    # a short data path: the tools dump the config through yapf, slow on long paths
    short = tempfile.mkdtemp(prefix='scst', dir='/tmp')
    try:
        root = make_tiny_dataset(osp.join(short, 'd'))
        model = ("dict(type='SelfCriticalCaptioner', captioner=_student, "
                 "references=dict(ann_file=data_root + '/language/tiny_caption.json', "
                 "split_file=data_root + '/splits/tiny_train_list.json'), "
                 "sampler=dict(num_samples=2, seed=0))")
        cfg = write_tiny_config(osp.join(short, 'scst.py'), root, model=model)
        work = osp.join(short, 'w')
        res = run_tool(['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', work,
                        '--cfg-options', 'train_cfg.max_epochs=1'],
                       env=dict(PYTHON=sys.executable, PORT=str(free_port())))
        log = res.stdout + res.stderr
        assert res.returncode == 0, log[-3000:]
        assert 'Distributed training: True' in log and 'loss_scst' in log
        # 24 training captions / (2 processes x batch 4) = 3 steps, counted in the checkpoint
        state = torch.load(osp.join(work, 'epoch_1.pth'), weights_only=False)['state_dict']
        assert int(state['sample_step']) == 3
        # the document frequencies were counted once and cached beside the annotations
        assert os.listdir(osp.join(root, 'language', '.capdistill_cache'))
    finally:
        shutil.rmtree(short, ignore_errors=True)
