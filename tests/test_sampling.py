"""The seeded, KV-cached caption sampler."""
import numpy as np
import pytest
import torch

from capdistill.models.captioners import greedy_decode
from capdistill.models.captioners.sampling import (CaptionSampler, _pick, sample_decode,
                                                   teacher_forcing_tokens)
from capdistill.registry import MODELS

WORDS = ['a', 'red', 'blue', 'ball', 'cube', 'spins', 'rolls', 'jumps']


def tiny_captioner(head='PrefixLMHead', seed=0, max_len=6):
    torch.manual_seed(seed)
    model = MODELS.build(dict(
        type='Captioner', feature_key='feats',
        visual_encoder=dict(type='FeatureProjector', in_dim=8, embed_dim=16, dropout=0.0),
        encoder=dict(type='IdentityEncoder'),
        head=dict(type=head, embed_dim=16, depth=2, num_heads=2, dropout=0.0),
        tokenizer=dict(type='WordTokenizer', words=WORDS), max_len=max_len))
    with torch.no_grad():  # a flatter random model: captions of varied length
        model.head.word_embed.weight.mul_(20)
    return model.eval()


def batch(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(feats=torch.randn(n, 4, 8, generator=g),
                feats_mask=torch.ones(n, 4, dtype=torch.bool))


def uncached_sample(model, inputs, max_steps, temperature, generator, banned):
    """Reference: the whole head over the full prefix at every step, same draws."""
    memory, mask = model.encode(inputs)
    tok = model.tokenizer
    tokens = torch.full((memory.shape[0], 1), tok.bos_id)
    finished = torch.zeros(memory.shape[0], dtype=torch.bool)
    for _ in range(max_steps):
        logits = model.head(memory, mask, tokens)[:, -1] / temperature
        logits[:, banned] = float('-inf')
        nxt = _pick(torch.softmax(logits, -1), generator).masked_fill(finished, tok.eos_id)
        tokens = torch.cat([tokens, nxt[:, None]], 1)
        finished |= nxt == tok.eos_id
        if finished.all():
            break
    return tokens[:, 1:]


@pytest.mark.parametrize('head', ['PrefixLMHead', 'TransformerDecoderHead'])
def test_cached_sampling_equals_the_uncached_loop(head):
    model = tiny_captioner(head)
    inputs = batch(5)
    memory, mask = model.encode(inputs)
    got = sample_decode(model.head, memory, mask, 1, 2, 7, temperature=1.3,
                        generator=torch.Generator().manual_seed(7), banned_ids=[0, 1])
    ref = uncached_sample(model, inputs, 7, 1.3, torch.Generator().manual_seed(7), [0, 1])
    assert torch.equal(got, ref)
    assert len({tuple(r) for r in got.tolist()}) > 1  # not all the same caption


def test_same_seed_same_captions_other_seed_other_captions():
    model = tiny_captioner()
    sampler = CaptionSampler(temperature=1.0, num_samples=4, seed=3)
    a = sampler(model, batch(), generator=sampler.generator(step=5))['ids']
    b = sampler(model, batch(), generator=sampler.generator(step=5))['ids']
    c = sampler(model, batch(), generator=sampler.generator(step=6))['ids']
    d = sampler(model, batch(), generator=sampler.generator(step=5, rank=1))['ids']
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, d)
    assert a.shape[0] == 12


def test_first_word_frequencies_follow_the_tempered_softmax():
    model = tiny_captioner()
    inputs = batch(1)
    memory, mask = model.encode(inputs)
    n, temp = 4000, 0.7
    state = model.head.start(memory, mask)
    logits = model.head.step(torch.tensor([1]), state)[0] / temp
    logits[[0, 1]] = float('-inf')
    expected = torch.softmax(logits, -1).detach().numpy()
    ids = sample_decode(model.head, memory.expand(n, -1, -1), mask.expand(n, -1), 1, 2, 1,
                        temperature=temp, generator=torch.Generator().manual_seed(0),
                        banned_ids=[0, 1])
    freq = np.bincount(ids[:, 0].numpy(), minlength=len(expected)) / n
    assert freq[0] == 0 and freq[1] == 0
    # 4000 draws: each frequency within 4 standard errors of its probability
    se = np.sqrt(expected * (1 - expected) / n) + 1e-3
    assert (np.abs(freq - expected) < 4 * se).all(), (freq, expected)


def test_cold_sampling_is_greedy_and_lengths_are_bounded():
    model = tiny_captioner()
    memory, mask = model.encode(batch(6))
    greedy = greedy_decode(model.head, memory, mask, 1, 2, 7, banned_ids=[0, 1])
    cold = sample_decode(model.head, memory, mask, 1, 2, 7, temperature=1e-4,
                         generator=torch.Generator().manual_seed(1), banned_ids=[0, 1])
    assert torch.equal(cold, greedy)
    ids = sample_decode(model.head, memory, mask, 1, 2, 3, temperature=5.0,
                        generator=torch.Generator().manual_seed(1), banned_ids=[0, 1])
    assert ids.shape[1] <= 3 and not ((ids == 0) | (ids == 1)).any()


def test_no_gradient_through_sampling_and_logprobs_match_rescoring():
    model = tiny_captioner()
    model.train()  # gradients on, dropout is 0 in this model
    sampler = CaptionSampler(temperature=1.0, num_samples=2, seed=0)
    out = sampler(model, batch(), generator=sampler.generator(0), return_logprobs=True)
    assert not out['ids'].requires_grad and not out['logprobs'].requires_grad
    # teacher-forced re-scoring (with gradient) gives the sampling log-probabilities
    logits = model.caption_logits(out['inputs'], out['tokens'])
    logits[..., [0, 1]] = float('-inf')
    logp = torch.log_softmax(logits, -1).gather(-1, out['tokens'][:, 1:, None])[..., 0]
    assert logp.requires_grad
    torch.testing.assert_close(logp.detach() * out['mask'], out['logprobs'] * out['mask'],
                               rtol=1e-5, atol=1e-5)


def test_teacher_forcing_tokens_pad_after_first_eos():
    ids = torch.tensor([[5, 6, 2, 2], [7, 2, 2, 2], [5, 6, 7, 8]])
    tokens, mask = teacher_forcing_tokens(ids, bos_id=1, eos_id=2, pad_id=0)
    assert tokens.tolist() == [[1, 5, 6, 2, 0], [1, 7, 2, 0, 0], [1, 5, 6, 7, 8]]
    assert mask.tolist() == [[True, True, True, False], [True, True, False, False],
                             [True] * 4]


def test_bad_sampler_settings_are_refused():
    with pytest.raises(ValueError, match='temperature must be > 0'):
        CaptionSampler(temperature=0)
    with pytest.raises(ValueError, match='num_samples'):
        CaptionSampler(num_samples=0)
    with pytest.raises(ValueError, match='exceeds the captioner'):
        CaptionSampler(max_len=50).check(tiny_captioner())
