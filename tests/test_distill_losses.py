"""Golden values (by hand or an independent formula) and gradient checks of the loss zoo."""
import math

import pytest
import torch
import torch.nn.functional as F

from capdistill.registry import LOSSES


def build(type_, **kw):
    return LOSSES.build(dict(type=type_, **kw))


def d(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


# -- golden values -----------------------------------------------------------------
def test_feature_mse_by_hand():
    s = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[3.0, 1.0], [9.0, 9.0]]])
    t = torch.tensor([[[0.0, 2.0], [1.0, 1.0]], [[1.0, 1.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True], [True, False]])
    # rows: (1+0)/2, (1+1)/2, (4+0)/2 -> mean of 0.5, 1, 2 = 7/6
    assert build('FeatureMSELoss', loss_weight=2.0)(s, t, mask).item() == pytest.approx(7 / 3)
    assert build('FeatureMSELoss')(s, t).item() == pytest.approx((0.5 + 1 + 2 + 81) / 4)


def test_feature_cosine_by_hand():
    s = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    t = torch.tensor([[0.0, 3.0], [2.0, 2.0], [0.0, -1.0]])
    # 1 - cos: 1, 0, 2
    assert build('FeatureCosineLoss')(s, t).item() == pytest.approx(1.0)
    mask = torch.tensor([True, True, False])
    assert build('FeatureCosineLoss')(s, t, mask).item() == pytest.approx(0.5)


def test_relational_similarity_matches_sp_formula():
    s, t = d(4, 3, 5), d(4, 3, 7, seed=1)
    got = build('RelationalLoss', mode='similarity')(s, t).item()
    # independent: loop form of Tung & Mori's G = rownorm(F F^T)
    fs, ft = s.mean(1), t.mean(1)
    total = 0.0
    for i in range(4):
        rs = torch.stack([fs[i] @ fs[j] for j in range(4)])
        rt = torch.stack([ft[i] @ ft[j] for j in range(4)])
        total += ((rs / rs.norm() - rt / rt.norm()) ** 2).sum().item()
    assert got == pytest.approx(total / 16)


def test_relational_distance_by_hand():
    s = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 8.0]])   # distances 5, 8, 5 -> mu 6
    t = torch.tensor([[0.0], [1.0], [2.0]])                  # distances 1, 2, 1 -> mu 4/3
    ds = torch.tensor([5, 8, 5]) / 6.0
    dt = torch.tensor([1, 2, 1]) / (4 / 3)
    diff = (ds - dt).abs()
    want = torch.where(diff < 1, 0.5 * diff ** 2, diff - 0.5).mean().item()
    assert build('RelationalLoss', mode='distance')(s, t).item() == pytest.approx(want)


def test_object_and_action_distill():
    s = torch.tensor([[[1.0, 1.0], [2.0, 0.0]]])
    t = torch.tensor([[[1.0, 0.0], [2.0, 2.0]]])
    assert build('ObjectDistillLoss')(s, t).item() == pytest.approx((0.5 + 2.0) / 2)
    # max-pool: s -> (2, 1), t -> (2, 2); unnormalised squared error mean = (0 + 1) / 2
    act = build('ActionDistillLoss', normalize=False)
    assert act(s, t).item() == pytest.approx(0.5)
    ta = torch.tensor([[[3.0, 4.0], [0.0, 0.0], [100.0, 100.0]]])
    tm = torch.tensor([[True, True, False]])
    # normalised: s (2,1)/sqrt5, t (3,4)/5
    a = torch.tensor([2.0, 1.0]) / math.sqrt(5)
    b = torch.tensor([0.6, 0.8])
    want = ((a - b) ** 2).mean().item()
    assert build('ActionDistillLoss')(s, ta, tm).item() == pytest.approx(want)


def test_sequence_kd_is_ce_on_teacher_tokens():
    logits = d(2, 3, 5)
    targets = torch.tensor([[1, 4, 0], [2, 2, 3]])
    got = build('SequenceKDLoss')(logits, targets).item()
    logp = torch.log_softmax(logits, -1)
    terms = [-logp[b, i, targets[b, i]].item() for b in range(2) for i in range(3)
             if targets[b, i] != 0]
    assert got == pytest.approx(sum(terms) / len(terms))


def test_quality_weighted_by_formula():
    logits = d(2, 2, 4)
    targets = torch.tensor([[1, 2], [3, 0]])
    weight = torch.tensor([2.0, 0.5])
    logp = torch.log_softmax(logits, -1)
    nll = -logp.gather(-1, targets[..., None])[..., 0]
    want = (2 * (nll[0, 0] + nll[0, 1]) + 0.5 * nll[1, 0]) / (2 * 2 + 0.5)
    loss = build('QualityWeightedCaptionLoss', smoothing=0.0)
    assert loss(logits, targets, weight).item() == pytest.approx(want.item())
    # gamma=0 is the plain loss; with smoothing it equals LabelSmoothingLoss
    ls = build('LabelSmoothingLoss', smoothing=0.1)(logits, targets).item()
    q = build('QualityWeightedCaptionLoss', smoothing=0.1, gamma=0.0)
    assert q(logits, targets, weight).item() == pytest.approx(ls)


def test_concept_prediction_by_hand():
    feats = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[5.0, 5.0], [5.0, 5.0]]])
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    concepts = torch.tensor([[1, 2], [0, 0]])     # second video has no concept
    got = build('ConceptPredictionLoss')(feats, concepts, emb).item()
    # video 0: max-pool (1, 2); scores (0, 1, 2)
    logz = math.log(1 + math.e + math.e ** 2)
    want = -((1 - logz) + (2 - logz)) / 2
    assert got == pytest.approx(want)


def test_word_kl_matches_torch_kl_div():
    s, t = d(2, 3, 6), d(2, 3, 6, seed=1)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    got = build('WordKLLoss', tau=2.0)(s, t, mask).item()
    kl = F.kl_div(torch.log_softmax(s / 2, -1), torch.log_softmax(t / 2, -1),
                  log_target=True, reduction='none').sum(-1)
    assert got == pytest.approx(4 * kl[mask].mean().item())


# -- gradient checks ------------------------------------------------------------------
@pytest.mark.parametrize('type_,kw,make', [
    ('FeatureMSELoss', {}, lambda: (d(2, 3, 4), d(2, 3, 4, seed=1))),
    ('FeatureCosineLoss', {}, lambda: (d(2, 3, 4), d(2, 3, 4, seed=1))),
    ('RelationalLoss', dict(mode='similarity'), lambda: (d(4, 3), d(4, 5, seed=1))),
    ('RelationalLoss', dict(mode='distance'), lambda: (d(4, 3), d(4, 5, seed=1))),
    ('ObjectDistillLoss', {}, lambda: (d(2, 3, 4), d(2, 3, 4, seed=1))),
    ('ActionDistillLoss', dict(pool='mean'), lambda: (d(2, 3, 4), d(2, 5, 4, seed=1))),
])
def test_feature_loss_gradients(type_, kw, make):
    loss = build(type_, **kw)
    s, t = make()
    s.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: loss(x, t), (s,))


def test_caption_loss_gradients():
    logits = d(2, 3, 5).requires_grad_(True)
    targets = torch.tensor([[1, 4, 0], [2, 2, 3]])
    weight = torch.tensor([1.5, 0.5], dtype=torch.float64)
    seq = build('SequenceKDLoss', smoothing=0.1)
    q = build('QualityWeightedCaptionLoss', smoothing=0.1)
    assert torch.autograd.gradcheck(lambda x: seq(x, targets), (logits,))
    assert torch.autograd.gradcheck(lambda x: q(x, targets, weight), (logits,))


def test_concept_loss_gradients():
    feats, emb = d(2, 3, 4).requires_grad_(True), d(6, 4, seed=1).requires_grad_(True)
    concepts = torch.tensor([[1, 5, 0], [2, 0, 0]])
    loss = build('ConceptPredictionLoss', pool='mean')
    assert torch.autograd.gradcheck(lambda f, e: loss(f, concepts, e), (feats, emb))


def test_shape_mismatch_asks_for_a_connector():
    with pytest.raises(ValueError, match='connector'):
        build('FeatureMSELoss')(torch.zeros(2, 3), torch.zeros(2, 4))
