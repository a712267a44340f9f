"""One video through a PrefixLMHead: the functional decoder == the head's own steps."""
import threading

import pytest
import torch

from capdistill.models.captioners import PrefixLMHead, greedy_decode
from capdistill.models.captioners.one_video import OneVideoDecoder

BOS, EOS = 1, 2


def make_head(seed=0, vocab=40, dim=32, depth=2):
    torch.manual_seed(seed)
    head = PrefixLMHead(vocab_size=vocab, embed_dim=dim, depth=depth, num_heads=2,
                        max_len=12).eval()
    with torch.no_grad():
        head.word_embed.weight.mul_(5.0)  # peaky distributions: varied captions
        head.type_embed.normal_(std=0.5)
        head.word_embed.weight[:, EOS] += 0.5
    return head


def one_memory(seed=1, n=6, dim=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, n, dim, generator=g), torch.ones(1, n, dtype=torch.bool)


def count_steps(monkeypatch):
    calls = []
    step = OneVideoDecoder.step

    def counted(self, tokens, state):
        calls.append(tokens.shape[0])
        return step(self, tokens, state)
    monkeypatch.setattr(OneVideoDecoder, 'step', counted)
    return calls


@pytest.mark.parametrize('depth', [1, 2])
def test_steps_match_the_head(depth):
    head = make_head(depth=depth)
    memory, mask = one_memory()
    words = torch.randint(3, 40, (11,), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        state = dict(head.start(memory, mask), dense=True)
        decoder = OneVideoDecoder.of(head, memory, mask, 11)
        # the prefix's keys and values (the last block's computed without its MLP)
        for cache, qkv in zip(state['caches'], decoder.buffers.qkv):
            p, dim = cache['kv'].shape[3], head.word_embed.embedding_dim
            torch.testing.assert_close(qkv[:p, dim:],
                                       cache['kv'][0].permute(2, 0, 1, 3).reshape(p, -1),
                                       atol=1e-6, rtol=1e-6)
        for t, word in enumerate(words):  # hidden states and logits, alternately
            state['hidden_only'] = t % 2 == 0
            torch.testing.assert_close(decoder.step(word[None], dict(state)),
                                       head.step(word[None], state), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('depth', [1, 2])
def test_greedy_on_one_video_equals_the_reference_loop(depth, monkeypatch):
    calls = count_steps(monkeypatch)
    for seed in range(4):
        head = make_head(seed=seed, depth=depth)
        memory, mask = one_memory(seed=seed + 10)
        for kw in (dict(), dict(min_len=4, banned_ids=[0, 1, 7])):
            fast = greedy_decode(head, memory, mask, BOS, EOS, 11, **kw)
            slow = greedy_decode(head, memory, mask, BOS, EOS, 11, use_cache=False, **kw)
            assert torch.equal(fast, slow)
    assert calls and set(calls) == {1}  # the decoder ran every cached step


def test_it_steps_aside_where_it_does_not_apply(monkeypatch):
    calls = count_steps(monkeypatch)
    head = make_head()
    memory, mask = one_memory()
    padded = mask.clone()
    padded[0, 4:] = False
    two = (memory.expand(2, -1, -1), mask.expand(2, -1))
    assert OneVideoDecoder.of(head, memory, padded, 11) is None
    assert OneVideoDecoder.of(head, *two, 11) is None
    assert OneVideoDecoder.of(head.train(), memory, mask, 11) is None  # dropout is on
    head.eval()
    for m, k in ((memory, padded), two):  # the head's own steps, same captions
        assert torch.equal(greedy_decode(head, m, k, BOS, EOS, 11),
                           greedy_decode(head, m, k, BOS, EOS, 11, use_cache=False))
    assert not calls


def test_it_follows_the_weights(monkeypatch):
    """A parameter changed in place (an optimiser step, a loaded checkpoint) or replaced
    is read by the next decode."""
    head = make_head(seed=3)
    memory, mask = one_memory(seed=4)

    def same():
        return torch.equal(greedy_decode(head, memory, mask, BOS, EOS, 11),
                           greedy_decode(head, memory, mask, BOS, EOS, 11, use_cache=False))
    before = greedy_decode(head, memory, mask, BOS, EOS, 11)
    assert same()
    with torch.no_grad():
        head.word_pos.copy_(torch.randn_like(head.word_pos) * 3)
    assert same()
    head.blocks[0].mlp[0].weight = torch.nn.Parameter(
        head.blocks[0].mlp[0].weight.detach() * -2)
    assert same()
    assert not torch.equal(before, greedy_decode(head, memory, mask, BOS, EOS, 11))


def test_threads_do_not_share_buffers():
    head = make_head(seed=5)
    videos = [one_memory(seed=s) for s in range(12)]
    expected = [greedy_decode(head, m, k, BOS, EOS, 11, use_cache=False) for m, k in videos]
    got, errors = {}, []

    def work(offset):
        try:
            for _ in range(5):
                for i in range(offset, len(videos), 2):
                    got.setdefault(i, []).append(greedy_decode(head, *videos[i], BOS, EOS, 11))
        except Exception as e:  # surfaced below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(o,)) for o in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, ids in got.items():
        assert all(torch.equal(x, expected[i]) for x in ids), i
