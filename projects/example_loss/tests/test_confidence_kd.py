"""The example project's loss: golden value, gradient check, config and algorithm wiring."""
import os
import sys

import torch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.utils import import_modules_from_strings  # noqa: E402

from capdistill.registry import LOSSES, MODELS  # noqa: E402

CONFIG = os.path.join(REPO, 'projects/example_loss/configs/'
                      'confkd_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py')


def _loss(**kw):
    import_modules_from_strings(['projects.example_loss.confidence_kd'])
    return LOSSES.build(dict(type='ConfidenceWeightedWordKLLoss', **kw))


def test_golden_value_by_loops():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    t = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([[1, 2, 0], [4, 3, 3]])
    m = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    num = den = 0.0
    for b in range(2):
        for i in range(3):
            if not m[b, i]:
                continue
            ps, pt = torch.softmax(s[b, i] / 2, -1), torch.softmax(t[b, i] / 2, -1)
            kl = sum(pt[v] * torch.log(pt[v] / ps[v]) for v in range(5))
            c = torch.softmax(t[b, i], -1)[y[b, i]] ** 2
            num, den = num + c * kl, den + c
    want = 4 * num / den
    assert torch.allclose(_loss(tau=2.0, beta=2.0)(s, t, y, m), want)
    # beta = 0 is plain word KD
    plain = LOSSES.build(dict(type='WordKLLoss', tau=2.0))(s, t, m)
    assert torch.allclose(_loss(tau=2.0, beta=0.0)(s, t, y, m), plain)


def test_gradient_check():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    y, m = torch.tensor([[1, 2, 3], [0, 3, 1]]), torch.ones(2, 3, dtype=torch.bool)
    loss = _loss()
    assert torch.autograd.gradcheck(lambda x: loss(x, t, y, m), (s,))


def test_config_imports_the_loss_and_wires_it():
    cfg = Config.fromfile(CONFIG)
    assert cfg.custom_imports.imports == ['projects.example_loss.confidence_kd']
    import_modules_from_strings(**cfg.custom_imports)
    words = ['a', 'red', 'ball']

    def cap(dim, key):
        return dict(type='Captioner', feature_key=key, max_len=4,
                    visual_encoder=dict(type='FeatureProjector', in_dim=dim, embed_dim=8),
                    encoder=dict(type='IdentityEncoder'), tokenizer=dict(type='WordTokenizer',
                                                                          words=words),
                    head=dict(type='PrefixLMHead', embed_dim=8, depth=1, num_heads=2))
    model = dict(cfg.model, student=cap(6, 'feats'), teacher=cap(10, 'teacher_feats'),
                 teacher_ckpt=None, allow_random_teacher=True)
    with DefaultScope.overwrite_default_scope('capdistill'):
        algo = MODELS.build(model)
    inputs = dict(feats=torch.randn(2, 3, 6), feats_mask=torch.ones(2, 3, dtype=torch.bool),
                  teacher_feats=torch.randn(2, 3, 10),
                  teacher_feats_mask=torch.ones(2, 3, dtype=torch.bool))
    tokens = torch.tensor([[1, 4, 5, 2, 0], [1, 6, 2, 0, 0]])
    losses = algo(inputs, dict(tokens=tokens, video_id=['a', 'b']), mode='loss')
    assert torch.isfinite(losses['distill.loss_word'])
