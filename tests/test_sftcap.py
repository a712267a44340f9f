"""SFTCap configs: every model builds; capdemo variants train one step and predict."""
import glob
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope

from capdistill.registry import MODELS
from conftest import REPO, make_tiny_dataset

CONFIGS = sorted(glob.glob(os.path.join(REPO, 'configs', 'sftcap', '*.py')))


def build(cfg_model):
    with DefaultScope.overwrite_default_scope('capdistill'):
        return MODELS.build(cfg_model)


def shrink(cfg_model, tokenizer):
    """Real-data configs, made buildable here: no weight files, a small tokenizer."""
    if cfg_model.type != 'DistillAlgorithm':
        cfg_model.tokenizer = tokenizer
    if cfg_model.type == 'SFTCap':
        cfg_model.head.clip_embedding = None
    if cfg_model.type == 'DistillAlgorithm':
        cfg_model.teacher_ckpt = None
        cfg_model.allow_random_teacher = True
        cfg_model.student.tokenizer = cfg_model.teacher.tokenizer = tokenizer
    return cfg_model


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = make_tiny_dataset(str(tmp_path_factory.mktemp('tiny')))
    tok = dict(type='WordTokenizer', vocab_file=f'{root}/language/vocab.json',
               build_from=dict(ann_file=f'{root}/language/tiny_caption.json',
                               split_file=f'{root}/splits/tiny_train_list.json'))
    return root, tok


def batch(model_cfg, b=3, t=6):
    g = torch.Generator().manual_seed(0)
    def feats(cfg):
        return cfg.visual_encoder.in_dim
    parts = ([model_cfg.student, model_cfg.teacher] if model_cfg.type == 'DistillAlgorithm'
             else [model_cfg])
    inputs = {}
    for p in parts:
        inputs[p.feature_key] = torch.randn(b, t, feats(p), generator=g)
        inputs[p.feature_key + '_mask'] = torch.ones(b, t, dtype=torch.bool)
    inputs[parts[0].feature_key + '_mask'][1, 4:] = False
    tokens = torch.tensor([[1, 5, 6, 7, 2, 0, 0, 0]] * b)
    samples = dict(video_id=[f'v{i}' for i in range(b)], tokens=tokens,
                   weight=torch.ones(b), refs=[['a b c']] * b,
                   obj_tokens=torch.tensor([[5, 6, 0]] * b), act_tokens=torch.tensor([[7, 0, 0]] * b),
                   teacher_tokens=[torch.tensor([1, 6, 5, 2, 0, 0, 0, 0])] * b)
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('path', [c for c in CONFIGS if 'capdemo' not in c],
                         ids=os.path.basename)
def test_real_data_configs_build(path, tiny):
    cfg = Config.fromfile(path)
    assert cfg.train_dataloader.batch_size == 64 and cfg.train_cfg.max_epochs == 20
    assert cfg.optim_wrapper.optimizer.lr == 2e-4
    assert cfg.max_len == 22 and cfg.num_frames == 15
    m = cfg.model
    if m.type == 'SFTCap':
        assert m.t == 0.5 and m.head.clip_embedding.startswith('model_zoo/')
        # the real tokenizer: full CLIP BPE head
        model = build(shrink(m, dict(type='ClipBPETokenizer')))
        assert model.head.word_embed.num_embeddings == 49408
    else:
        model = build(shrink(m, tiny[1]))
    assert model is not None


@pytest.mark.parametrize('path', [c for c in CONFIGS if 'capdemo' in c], ids=os.path.basename)
def test_capdemo_configs_train_and_predict(path, tiny):
    cfg = Config.fromfile(path)
    m = shrink(cfg.model, tiny[1])
    parts = [m.student, m.teacher] if m.type == 'DistillAlgorithm' else [m]
    for p in parts:
        p.tokenizer = tiny[1]
        p.max_len = 6
    model = build(m)
    data = batch(m)
    optim = OptimWrapper(torch.optim.Adam(model.parameters(), lr=1e-3))
    model.train()
    losses = model.train_step(data, optim)
    assert all(torch.isfinite(v) for v in losses.values())
    if m.type == 'SFTCap':
        assert {'loss_caption_teacher', 'loss_caption_student', 'loss_obj_student',
                'loss_act_teacher'} <= set(losses)
    elif m.type == 'Captioner':  # the teacher of (b)
        assert set(losses) == {'loss_caption', 'loss'}
    else:  # (b): object-, action- and word-level distillation terms, all non-zero
        terms = {k.split('.')[-1]: float(v.detach()) for k, v in losses.items()}
        assert {'loss_word', 'loss_obj', 'loss_act'} <= set(terms), sorted(losses)
        assert terms['loss_word'] > 0 and terms['loss_obj'] > 0 and terms['loss_act'] > 0
    model.eval()
    preds = model.val_step(data)
    assert len(preds) == 3 and all('pred_caption' in p and p['video_id'] for p in preds)


def test_sftcap_student_export_and_concepts(tiny):
    cfg = Config.fromfile(os.path.join(REPO, 'configs/sftcap/sftcap_shared_grid8_1xb64-12e_capdemo.py'))
    m = shrink(cfg.model, tiny[1])
    m.max_len = 6
    model = build(m).eval()
    state = model.student_state_dict()
    assert state and not any(k.startswith('teacher_encoder.') for k in state)
    assert len(state) < len(model.state_dict())
    student = build(model.student_config()).eval()
    student.load_state_dict(state, strict=True)
    data = model.data_preprocessor(batch(m))
    assert torch.equal(model.generate(data['inputs']), student.generate(data['inputs']))
    # without concept labels a concept term with a weight stops the step, naming the option
    samples = {k: v for k, v in data['data_samples'].items()
               if k not in ('obj_tokens', 'act_tokens')}
    with pytest.raises(KeyError, match=r'lam_o=0.1.*dataset.concepts=dict'):
        model.loss(data['inputs'], samples)
    # teacher and student paths differ; predict uses the student path
    t_logits = model.caption_logits(data['inputs'], samples['tokens'], path='teacher')
    s_logits = model.caption_logits(data['inputs'], samples['tokens'])
    assert not torch.allclose(t_logits, s_logits)
