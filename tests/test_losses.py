import math

import torch

from capdistill.models.losses import CrossEntropyCaptionLoss, LabelSmoothingLoss, WordKLLoss


def test_label_smoothing_golden_value():
    # one token, vocab 3, logits give p = softmax([0, ln 2, 0]) = [1/4, 1/2, 1/4]
    logits = torch.tensor([[[0.0, math.log(2.0), 0.0]]])
    target = torch.tensor([[1]])
    eps = 0.1
    q = [eps / 2, 1 - eps, eps / 2]
    p = [0.25, 0.5, 0.25]
    expected = sum(qi * (math.log(qi) - math.log(pi)) for qi, pi in zip(q, p))
    loss = LabelSmoothingLoss(smoothing=eps, ignore_index=-1)(logits, target)
    assert abs(loss.item() - expected) < 1e-6


def test_label_smoothing_zero_is_cross_entropy_and_ignores_padding():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7)
    target = torch.tensor([[3, 2, 0, 0], [1, 5, 6, 0]])
    ls = LabelSmoothingLoss(smoothing=0.0)(logits, target)
    ce = CrossEntropyCaptionLoss()(logits, target)
    ref = torch.nn.functional.cross_entropy(logits[target != 0], target[target != 0])
    assert torch.allclose(ls, ref, atol=1e-6) and torch.allclose(ce, ref, atol=1e-6)


def test_sample_weights_scale_captions():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    target = torch.tensor([[1, 2, 3], [4, 1, 2]])
    loss_fn = CrossEntropyCaptionLoss()
    only_first = loss_fn(logits, target, torch.tensor([1.0, 0.0]))
    assert torch.allclose(only_first, loss_fn(logits[:1], target[:1]))


def test_word_kl_golden_value_and_gradient():
    s = torch.tensor([[[1.0, 0.0]]], requires_grad=True)
    t = torch.tensor([[[0.0, 1.0]]])
    tau = 2.0
    ps = torch.softmax(torch.tensor([0.5, 0.0]), 0)
    pt = torch.softmax(torch.tensor([0.0, 0.5]), 0)
    expected = tau ** 2 * float((pt * (pt.log() - ps.log())).sum())
    loss = WordKLLoss(tau=tau)(s, t, torch.ones(1, 1, dtype=torch.bool))
    assert abs(loss.item() - expected) < 1e-6
    loss.backward()
    # d/ds of tau^2 KL = tau * (p_s - p_t)
    assert torch.allclose(s.grad[0, 0], tau * (ps - pt), atol=1e-6)
    assert torch.autograd.gradcheck(
        lambda x: WordKLLoss(tau=1.5)(x, t.double(), torch.ones(1, 1, dtype=torch.bool)),
        (torch.randn(1, 1, 2, dtype=torch.double, requires_grad=True),))


def test_word_kl_is_zero_for_equal_logits_and_masked():
    x = torch.randn(2, 3, 6)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    assert WordKLLoss()(x, x, mask).abs() < 1e-6
    y = x.clone()
    y[0, 2] += 10  # a masked position may differ freely
    assert WordKLLoss()(x, y, mask).abs() < 1e-6
