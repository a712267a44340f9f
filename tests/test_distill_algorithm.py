"""The distillation algorithm in-process: frozen teacher, student-only state."""
import pytest
import torch
from mmengine.registry import DefaultScope

from capdistill.registry import MODELS
from capdistill.utils import CheckpointError


def _captioner(in_dim, embed, key, vocab_words):
    return dict(type='Captioner', feature_key=key,
                visual_encoder=dict(type='FeatureProjector', in_dim=in_dim, embed_dim=embed),
                encoder=dict(type='IdentityEncoder'),
                head=dict(type='PrefixLMHead', embed_dim=embed, depth=1, num_heads=2),
                tokenizer=dict(type='WordTokenizer', words=vocab_words), max_len=5)


WORDS = ['a', 'red', 'ball', 'spins', 'moves']


def _batch(b=3, t=4):
    g = torch.Generator().manual_seed(0)
    inputs = dict(feats=torch.randn(b, t, 6, generator=g), feats_mask=torch.ones(b, t, dtype=bool),
                  teacher_feats=torch.randn(b, t, 10, generator=g),
                  teacher_feats_mask=torch.ones(b, t, dtype=bool))
    tokens = torch.tensor([[1, 4, 5, 6, 2, 0, 0]] * b)
    return inputs, dict(tokens=tokens, video_id=[f'v{i}' for i in range(b)])


@pytest.fixture
def algorithm(tmp_path):
    teacher = MODELS.build(_captioner(10, 16, 'teacher_feats', WORDS))
    ckpt = tmp_path / 'teacher.pth'
    torch.save(dict(state_dict=teacher.state_dict()), ckpt)
    with DefaultScope.overwrite_default_scope('capdistill'):
        algo = MODELS.build(dict(
            type='DistillAlgorithm', student=_captioner(6, 8, 'feats', WORDS),
            teacher=_captioner(10, 16, 'teacher_feats', WORDS), teacher_ckpt=str(ckpt),
            distill_losses=dict(loss_word=dict(type='WordKLLoss', tau=2.0))))
    return algo, teacher


def test_teacher_loaded_frozen_and_outside_the_module_tree(algorithm):
    algo, reference = algorithm
    for k, v in reference.state_dict().items():
        assert torch.equal(algo.teacher.state_dict()[k], v)
    algo.train()
    assert algo.student.training and not algo.teacher.training
    assert not any(p.requires_grad for p in algo.teacher.parameters())
    assert all(k.startswith('student.') for k in algo.state_dict())
    assert all(not n.startswith('teacher') for n, _ in algo.named_parameters())


def test_one_step_changes_student_not_teacher(algorithm):
    algo, _ = algorithm
    algo.train()
    teacher_before = {k: v.clone() for k, v in algo.teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in algo.student.state_dict().items()}
    opt = torch.optim.SGD(algo.parameters(), lr=0.5)
    losses = algo(*_batch(), mode='loss')
    assert set(losses) == {'student.loss_caption', 'distill.loss_word'}
    assert losses['distill.loss_word'] > 0
    sum(losses.values()).backward()
    opt.step()
    assert all(torch.equal(teacher_before[k], v) for k, v in algo.teacher.state_dict().items())
    assert any(not torch.equal(student_before[k], v) for k, v in algo.student.state_dict().items())


def test_loss_argument_without_input_is_a_build_error(tmp_path):
    with DefaultScope.overwrite_default_scope('capdistill'), pytest.raises(ValueError, match='mask'):
        MODELS.build(dict(
            type='DistillAlgorithm', student=_captioner(6, 8, 'feats', WORDS),
            teacher=_captioner(10, 16, 'teacher_feats', WORDS), allow_random_teacher=True,
            distill_losses=dict(loss_kd=dict(type='WordKLLoss', inputs=dict(student='s_logits',
                                                                       teacher='t_logits')))))


def test_mismatched_teacher_checkpoint_is_reported(tmp_path):
    other = MODELS.build(_captioner(10, 32, 'teacher_feats', WORDS))
    ckpt = tmp_path / 'other.pth'
    torch.save(dict(state_dict=other.state_dict()), ckpt)
    with DefaultScope.overwrite_default_scope('capdistill'), pytest.raises(CheckpointError,
                                                                          match='does not match'):
        MODELS.build(dict(type='DistillAlgorithm', student=_captioner(6, 8, 'feats', WORDS),
                          teacher=_captioner(10, 16, 'teacher_feats', WORDS),
                          teacher_ckpt=str(ckpt)))


def test_distilled_run_can_serve_as_teacher(algorithm, tmp_path):
    algo, _ = algorithm
    ckpt = tmp_path / 'distilled.pth'
    # a distillation checkpoint holds student.* (and connectors.*): its student loads
    torch.save(dict(state_dict=algo.state_dict()), ckpt)
    with DefaultScope.overwrite_default_scope('capdistill'):
        second = MODELS.build(dict(
            type='DistillAlgorithm', student=_captioner(6, 8, 'feats', WORDS),
            teacher=_captioner(6, 8, 'feats', WORDS), teacher_ckpt=str(ckpt)))
    for k, v in algo.student.state_dict().items():
        assert torch.equal(second.teacher.state_dict()[k], v)


def test_no_distill_losses_means_no_teacher_forward(algorithm, monkeypatch):
    algo, _ = algorithm
    algo.distill_losses = torch.nn.ModuleDict()
    algo._used = set()
    monkeypatch.setattr(algo.teacher, 'caption_logits',
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError('teacher ran')))
    assert set(algo(*_batch(), mode='loss')) == {'student.loss_caption'}
