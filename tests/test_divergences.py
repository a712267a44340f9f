"""Token-level divergences: golden values from scipy/numpy, limits, masks, gradients."""
import numpy as np
import pytest
import torch
from scipy.special import log_softmax as np_log_softmax
from scipy.special import rel_entr

from capdistill.registry import LOSSES

NAMES = ['ForwardKLDivergence', 'ReverseKLDivergence', 'GeneralizedJSDivergence',
         'SkewKLDivergence', 'SkewReverseKLDivergence', 'TotalVariationDistance']


def build(type_, **kw):
    return LOSSES.build(dict(type=type_, **kw))


def logits(seed, shape=(2, 3, 5), scale=2.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape)


def np_kl(a, b):
    # scipy's elementwise a log(a / b), 0 where a == 0
    return rel_entr(a, b).sum(-1)


def golden(name, s, t, tau=1.0, **kw):
    """Per-token divergence by an independent route: probabilities in numpy/scipy."""
    q = np.exp(np_log_softmax(s / tau, axis=-1))
    p = np.exp(np_log_softmax(t / tau, axis=-1))
    if name == 'ForwardKLDivergence':
        return np_kl(p, q)
    if name == 'ReverseKLDivergence':
        return np_kl(q, p)
    if name == 'GeneralizedJSDivergence':
        b = kw['beta']
        m = b * p + (1 - b) * q
        return b * np_kl(p, m) + (1 - b) * np_kl(q, m)
    if name == 'SkewKLDivergence':
        a = kw['alpha']
        return np_kl(p, a * p + (1 - a) * q)
    if name == 'SkewReverseKLDivergence':
        a = kw['alpha']
        return np_kl(q, (1 - a) * p + a * q)
    return 0.5 * np.abs(p - q).sum(-1)


KWARGS = {'GeneralizedJSDivergence': dict(beta=0.3), 'SkewKLDivergence': dict(alpha=0.1),
          'SkewReverseKLDivergence': dict(alpha=0.2)}
MASK = np.array([[1, 1, 0], [1, 0, 0]], dtype=bool)


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('tau', [1.0, 2.0])
def test_golden_values_and_reductions(name, tau):
    s, t = logits(0), logits(1)
    kw = KWARGS.get(name, {})
    per = golden(name, s, t, tau, **kw)
    scale = tau ** 2 * 0.7
    args = (torch.tensor(s), torch.tensor(t), torch.tensor(MASK))
    got = {r: build(name, tau=tau, reduction=r, loss_weight=0.7, **kw)(*args)
           for r in ('mean', 'sum', 'batchmean', 'none')}
    assert got['mean'].item() == pytest.approx(scale * per[MASK].mean(), rel=1e-10)
    assert got['sum'].item() == pytest.approx(scale * per[MASK].sum(), rel=1e-10)
    assert got['batchmean'].item() == pytest.approx(scale * per[MASK].sum() / 2, rel=1e-10)
    np.testing.assert_allclose(got['none'].numpy(), scale * per * MASK, rtol=1e-10)
    # no mask: every position counts
    full = build(name, tau=tau, **kw)(torch.tensor(s), torch.tensor(t))
    assert full.item() == pytest.approx(tau ** 2 * per.mean(), rel=1e-10)


def test_forward_kl_equals_word_kl():
    s, t = torch.tensor(logits(2)), torch.tensor(logits(3))
    mask = torch.tensor(MASK)
    ours = build('ForwardKLDivergence', tau=2.0)(s, t, mask)
    assert ours.item() == pytest.approx(build('WordKLLoss', tau=2.0)(s, t, mask).item(),
                                        rel=1e-12)


def test_jsd_endpoints_are_the_kls_and_its_limits_agree():
    s, t = torch.tensor(logits(4)), torch.tensor(logits(5))
    fkl = build('ForwardKLDivergence')(s, t).item()
    rkl = build('ReverseKLDivergence')(s, t).item()
    assert build('GeneralizedJSDivergence', beta=0.0)(s, t).item() == pytest.approx(fkl)
    assert build('GeneralizedJSDivergence', beta=1.0)(s, t).item() == pytest.approx(rkl)
    # the GKD convention: JSD(beta)/beta -> KL(p||q) at 0, JSD/(1-beta) -> KL(q||p) at 1
    eps = 1e-5
    near0 = build('GeneralizedJSDivergence', beta=eps)(s, t).item() / eps
    near1 = build('GeneralizedJSDivergence', beta=1 - eps)(s, t).item() / eps
    assert near0 == pytest.approx(fkl, rel=1e-3)
    assert near1 == pytest.approx(rkl, rel=1e-3)
    # beta = 0.5 is the classic JSD: symmetric, at most log 2
    jsd = build('GeneralizedJSDivergence', beta=0.5)
    assert jsd(s, t).item() == pytest.approx(jsd(t, s).item(), rel=1e-12)
    assert jsd(s, t).item() <= np.log(2)


def test_skews_at_zero_are_the_kls_and_are_bounded():
    s, t = torch.tensor(logits(6, scale=8.0)), torch.tensor(logits(7, scale=8.0))
    assert build('SkewKLDivergence', alpha=0.0)(s, t).item() == pytest.approx(
        build('ForwardKLDivergence')(s, t).item())
    assert build('SkewReverseKLDivergence', alpha=0.0)(s, t).item() == pytest.approx(
        build('ReverseKLDivergence')(s, t).item())
    # a skewed target keeps a share alpha of the other side: KL <= -log(alpha)
    for name in ('SkewKLDivergence', 'SkewReverseKLDivergence'):
        per = build(name, alpha=0.1, reduction='none')(s, t)
        assert per.max().item() <= -np.log(0.1) + 1e-9


def test_zero_on_equal_distributions_and_padding_ignored():
    s = torch.tensor(logits(8))
    mask = torch.tensor(MASK)
    t = s.clone()
    # padded positions of the teacher are garbage: they must not count
    t[~mask] = 50 * torch.randn_like(t[~mask])
    for name in NAMES:
        loss = build(name, **KWARGS.get(name, {}))(s, t, mask)
        assert abs(loss.item()) < 1e-12, name


def test_teacher_with_minus_inf_logits_stays_finite():
    # a top-k teacher cache leaves -inf outside the teacher's top words
    s = torch.tensor(logits(9), requires_grad=True)
    t = torch.tensor(logits(10))
    t[..., 3:] = float('-inf')
    for name in ('ForwardKLDivergence', 'GeneralizedJSDivergence', 'SkewKLDivergence',
                 'SkewReverseKLDivergence', 'TotalVariationDistance'):
        loss = build(name, **KWARGS.get(name, {}))(s, t)
        (grad,) = torch.autograd.grad(loss, s)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), name
    # reverse KL is infinite there, and says so rather than returning nan
    assert build('ReverseKLDivergence')(s, t).item() == float('inf')


@pytest.mark.parametrize('name', NAMES)
def test_gradcheck_float64(name):
    g = torch.Generator().manual_seed(3)
    s = torch.randn(2, 2, 4, dtype=torch.float64, generator=g, requires_grad=True)
    t = torch.randn(2, 2, 4, dtype=torch.float64, generator=g, requires_grad=True)
    mask = torch.tensor([[True, False], [True, True]])
    loss = build(name, tau=1.5, **KWARGS.get(name, {}))
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b, mask), (s, t))


def test_half_precision_logits_are_upcast():
    s, t = torch.tensor(logits(11)), torch.tensor(logits(12))
    ref = build('GeneralizedJSDivergence', beta=0.5)(s, t).item()
    half = build('GeneralizedJSDivergence', beta=0.5)(s.half(), t.half())
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(ref, rel=1e-2)


@pytest.mark.parametrize('cfg, match', [
    (dict(type='GeneralizedJSDivergence', beta=1.5), 'beta must lie in'),
    (dict(type='SkewKLDivergence', alpha=1.0), r'alpha must lie in \[0, 1\)'),
    (dict(type='ForwardKLDivergence', tau=0), 'tau must be > 0'),
    (dict(type='TotalVariationDistance', reduction='avg'), 'reduction must be one of'),
])
def test_bad_settings_are_refused_at_build(cfg, match):
    with pytest.raises(ValueError, match=match):
        LOSSES.build(cfg)


def test_shape_mismatch_is_one_clear_error():
    with pytest.raises(ValueError, match='differ'):
        build('ReverseKLDivergence')(torch.zeros(1, 2, 5), torch.zeros(1, 2, 6))


def test_divergences_plug_into_the_distillation_wiring():
    """Built by name in a DistillAlgorithm, fed s_logits/t_logits/mask by default."""
    from mmengine.registry import DefaultScope

    from capdistill.registry import MODELS

    def captioner(in_dim, key):
        return dict(type='Captioner', feature_key=key,
                    visual_encoder=dict(type='FeatureProjector', in_dim=in_dim, embed_dim=8),
                    encoder=dict(type='IdentityEncoder'),
                    head=dict(type='PrefixLMHead', embed_dim=8, depth=1, num_heads=2),
                    tokenizer=dict(type='WordTokenizer', words=['a', 'red', 'ball']),
                    max_len=4)

    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('capdistill'):
        algo = MODELS.build(dict(
            type='DistillAlgorithm', student=captioner(6, 'feats'),
            teacher=captioner(10, 'teacher_feats'), allow_random_teacher=True,
            distill_losses={f'loss_{n}': dict(type=n, **KWARGS.get(n, {})) for n in NAMES}))
    g = torch.Generator().manual_seed(0)
    inputs = dict(feats=torch.randn(2, 3, 6, generator=g),
                  feats_mask=torch.ones(2, 3, dtype=torch.bool),
                  teacher_feats=torch.randn(2, 3, 10, generator=g),
                  teacher_feats_mask=torch.ones(2, 3, dtype=torch.bool))
    tokens = torch.tensor([[1, 4, 5, 2, 0, 0], [1, 6, 2, 0, 0, 0]])
    algo.eval()  # no dropout: the logits below are the ones the losses saw
    losses = algo.loss(inputs, dict(tokens=tokens, video_id=['v0', 'v1']))
    s = algo.student.caption_logits(inputs, tokens).detach().double().numpy()
    t = algo.teacher.caption_logits(inputs, tokens).detach().double().numpy()
    mask = (tokens[:, 1:] != 0).numpy()
    for name in NAMES:
        key = next(k for k in losses if k.endswith(f'loss_{name}'))
        want = golden(name, s, t, **KWARGS.get(name, {}))[mask].mean()
        assert losses[key].item() == pytest.approx(want, rel=1e-4), name
