"""Greedy and beam-search decoding: cache vs slow path, beam 1 vs greedy, brute force."""
import itertools

import pytest
import torch

from capdistill.models.captioners import (PrefixLMHead, TransformerDecoderHead, beam_search,
                                          decode, greedy_decode)

BOS, EOS = 1, 2
HEADS = [PrefixLMHead, TransformerDecoderHead]


class EOSBiased(torch.nn.Module):
    """A head whose EOS logit is raised by ``bias`` (so that captions end early)."""

    def __init__(self, head, bias):
        super().__init__()
        self.head, self.bias, self.vocab_size = head, bias, head.vocab_size

    def _add(self, logits):
        logits = logits.clone()
        logits[..., EOS] += self.bias
        return logits

    def forward(self, memory, mask, tokens):
        return self._add(self.head(memory, mask, tokens))

    def start(self, memory, mask):
        return self.head.start(memory, mask)

    def step(self, tokens, state):
        return self._add(self.head.step(tokens, state))

    def reorder(self, state, index):
        return self.head.reorder(state, index)


def make_head(cls, vocab=40, dim=32, seed=0, eos_bias=0.0, scale=5.0):
    torch.manual_seed(seed)
    head = cls(vocab_size=vocab, embed_dim=dim, depth=2, num_heads=2, max_len=12).eval()
    with torch.no_grad():
        head.word_embed.weight.mul_(scale)  # peaky distributions: varied captions
    return EOSBiased(head, eos_bias).eval()


def make_memory(b=5, n=6, dim=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(b, n, dim, generator=g)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[1, 4:] = False
    mask[3, 2:] = False
    return memory, mask


@pytest.mark.parametrize('cls', HEADS)
def test_cached_greedy_equals_slow_path(cls):
    for seed in range(3):
        head = make_head(cls, seed=seed, eos_bias=1.5)
        memory, mask = make_memory(seed=seed)
        fast = greedy_decode(head, memory, mask, BOS, EOS, 10, use_cache=True)
        slow = greedy_decode(head, memory, mask, BOS, EOS, 10, use_cache=False)
        assert torch.equal(fast, slow)
        # logits of each cached step equal the slow path's
        inner = head.head
        state = inner.start(memory, mask)
        tokens = torch.cat([torch.full((5, 1), BOS), fast], 1)
        full = inner(memory, mask, tokens)
        for t in range(tokens.shape[1]):
            step = inner.step(tokens[:, t], state)
            torch.testing.assert_close(step, full[:, t], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('cls', HEADS)
def test_cached_steps_without_padding_skip_the_mask(cls):
    """No padded visual token: decoding marks the state dense and the steps drop the
    key mask; logits and tokens stay those of the full forward pass."""
    head = make_head(cls, seed=4, eos_bias=1.0)
    memory, mask = make_memory(seed=4)
    mask[:] = True
    fast = greedy_decode(head, memory, mask, BOS, EOS, 10)
    assert torch.equal(fast, greedy_decode(head, memory, mask, BOS, EOS, 10, use_cache=False))
    beam = beam_search(head, memory, mask, BOS, EOS, 10, beam_size=3)
    assert torch.equal(beam, beam_search(head, memory, mask, BOS, EOS, 10, beam_size=3,
                                         use_cache=False))
    inner = head.head
    state = dict(inner.start(memory, mask), dense=True)
    tokens = torch.cat([torch.full((5, 1), BOS), fast], 1)
    full = inner(memory, mask, tokens)
    for t in range(tokens.shape[1]):
        torch.testing.assert_close(inner.step(tokens[:, t], state), full[:, t],
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('cls', HEADS)
def test_beam_one_equals_greedy(cls):
    ends = 0
    for seed in range(4):
        head = make_head(cls, seed=seed, eos_bias=1.5)
        memory, mask = make_memory(seed=seed)
        greedy = greedy_decode(head, memory, mask, BOS, EOS, 10)
        beam = beam_search(head, memory, mask, BOS, EOS, 10, beam_size=1, length_penalty=0.0)
        assert torch.equal(greedy, beam)
        ends += int((greedy == EOS).any(1).sum())
    assert ends > 0  # some captions end before max_steps


@pytest.mark.parametrize('cls', HEADS)
def test_beam_cached_equals_slow_and_constraints(cls):
    head = make_head(cls, eos_bias=1.5)
    memory, mask = make_memory()
    kw = dict(beam_size=4, length_penalty=1.0, no_repeat_ngram=2, min_len=3, banned_ids=[0, 1])
    fast = beam_search(head, memory, mask, BOS, EOS, 9, **kw)
    slow = beam_search(head, memory, mask, BOS, EOS, 9, use_cache=False, **kw)
    assert torch.equal(fast, slow)
    for row in fast.tolist():
        words = row[:row.index(EOS)] if EOS in row else row
        assert len(words) >= 3 and not {0, 1} & set(words)
        bigrams = list(zip(words, words[1:]))
        assert len(bigrams) == len(set(bigrams))
    # dispatch: beam of 1 goes to greedy, unknown strategies fail
    assert torch.equal(decode(head, memory, mask, BOS, EOS, 9, strategy='beam', beam_size=1),
                       greedy_decode(head, memory, mask, BOS, EOS, 9))
    with pytest.raises(ValueError):
        decode(head, memory, mask, BOS, EOS, 9, strategy='sample')


def brute_force(head, memory, mask, max_steps, length_penalty, banned):
    """Best score and sequence per video over every caption the search may produce."""
    vocab = head.vocab_size
    allowed = [w for w in range(vocab) if w not in banned]
    words = [w for w in allowed if w != EOS]
    best = []
    for i in range(memory.shape[0]):
        cands = []
        for n in range(max_steps):
            cands += [list(p) + [EOS] for p in itertools.product(words, repeat=n)]
        cands += [list(p) for p in itertools.product(words, repeat=max_steps)]
        tokens = torch.tensor([[BOS] + c + [EOS] * (max_steps - len(c)) for c in cands])
        logp = torch.log_softmax(head(memory[i:i + 1].expand(len(cands), -1, -1),
                                      mask[i:i + 1].expand(len(cands), -1), tokens), -1)
        scores = []
        for j, c in enumerate(cands):
            s = sum(logp[j, t, c[t]].item() for t in range(len(c)))
            scores.append(s / len(c) ** length_penalty)
        j = max(range(len(cands)), key=scores.__getitem__)
        best.append((scores[j], cands[j]))
    return best


@pytest.mark.parametrize('cls', HEADS)
@pytest.mark.parametrize('length_penalty', [0.0, 1.0])
@pytest.mark.parametrize('max_steps,beam', [(3, 5), (4, 8)])
def test_beam_finds_brute_force_optimum(cls, length_penalty, max_steps, beam):
    """Vocabulary of 5 (PAD, BOS banned; EOS and 2 words): with a beam as wide as the
    vocabulary (3 steps), or as the 2**3 live prefixes (4 steps), beam search is exact."""
    banned = [0, 1]
    found = 0
    for seed in range(2):
        head = make_head(cls, vocab=5, dim=16, seed=seed, scale=2.0, eos_bias=1.0)
        memory, mask = make_memory(b=4, dim=16, seed=seed)
        ids, scores = beam_search(head, memory, mask, BOS, EOS, max_steps, beam_size=beam,
                                  length_penalty=length_penalty, banned_ids=banned,
                                  return_scores=True)
        for i, (score, seq) in enumerate(brute_force(head, memory, mask, max_steps,
                                                     length_penalty, banned)):
            row = ids[i].tolist()
            got = row[:row.index(EOS) + 1] if EOS in row else row
            assert got == seq, (got, seq)
            assert scores[i].item() == pytest.approx(score, abs=1e-4)
            found += len(seq) < max_steps or seq[-1] == EOS
    assert found > 0


def test_row_topk_matches_torch_topk_on_wide_rows():
    from capdistill.models.captioners.decoding import row_topk
    g = torch.Generator().manual_seed(0)
    for v in (49408, 49407, 5000, 30):  # whole chunks, a partial last chunk, narrow rows
        x = torch.randn(9, v, generator=g)
        x[:, ::7] = float('-inf')  # banned words
        x[3, -1] = 50.0  # the best word in the partial last chunk
        values, index = row_topk(x, 6)
        expected = x.topk(6, dim=-1)
        assert torch.equal(values, expected[0]) and torch.equal(index, expected[1])
    # ties: equal values, each index pointing at its value
    x = torch.zeros(2, 49408)
    x[:, 100] = 4.0
    values, index = row_topk(x, 6)
    assert values.tolist() == [[4.0, 0, 0, 0, 0, 0]] * 2
    assert torch.equal(x.gather(1, index), values) and index[:, 0].tolist() == [100, 100]


@pytest.mark.parametrize('cls', HEADS)
def test_beam_on_a_wide_vocabulary(cls, monkeypatch):
    """4,000 words: the chunked top-k and the reused logits buffer are in play."""
    from capdistill.models.captioners import decoding
    head = make_head(cls, vocab=4000, eos_bias=3.0)
    memory, mask = make_memory()
    kw = dict(beam_size=5, length_penalty=1.0, banned_ids=[0, 1])
    fast = beam_search(head, memory, mask, BOS, EOS, 9, **kw)
    slow = beam_search(head, memory, mask, BOS, EOS, 9, use_cache=False, **kw)
    monkeypatch.setattr(decoding, 'row_topk',
                        lambda x, k, out=None: torch.topk(x, k, dim=-1, out=out))
    plain = beam_search(head, memory, mask, BOS, EOS, 9, **kw)
    assert torch.equal(fast, slow) and torch.equal(fast, plain)


@pytest.mark.parametrize('pad_one_row', [True, False])
def test_output_product_takes_a_few_rows_the_other_way_round(monkeypatch, pad_one_row):
    """A few rows over a large output layer: ``(W @ h.T).T``, the same scores; one row
    (padded to two) only where the CPU's matrix-vector product is the slower one."""
    from capdistill.models.captioners import word_pick
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(3000, 32, generator=g)
    monkeypatch.setattr(word_pick, 'TALL_PRODUCT_MIN_BYTES', weight.numel() * 4)
    monkeypatch.setattr(word_pick, 'PAD_ONE_ROW', pad_one_row)
    tall = []
    mm = torch.mm
    monkeypatch.setattr(torch, 'mm', lambda a, b, **kw: tall.append(a is weight) or mm(a, b, **kw))
    for n in (1, 2, 5, 8, 9):
        tall.clear()
        h = torch.randn(n, 32, generator=g)
        out = torch.empty(n, 3000)
        got = word_pick.output_product(h, weight, out=out)
        assert got is out and got.is_contiguous()
        torch.testing.assert_close(got, h @ weight.t())
        torch.testing.assert_close(word_pick.output_product(h, weight), h @ weight.t())
        assert (True in tall) == (n <= 8 and (n > 1 or pad_one_row)), n
    small = torch.randn(3000, 16, generator=g)  # below the size: the plain product
    tall.clear()
    torch.testing.assert_close(word_pick.output_product(h[:1, :16], small), h[:1, :16] @ small.t())
    assert True not in tall
    # a traced step (the ONNX export) keeps the plain product, weight second, for int8
    traced = torch.jit.trace(lambda x: word_pick.output_product(x, weight), torch.randn(5, 32))
    assert 'aten::linear' in str(traced.graph) and 'aten::mm' not in str(traced.graph)


@pytest.mark.parametrize('cls', HEADS)
def test_beam_over_one_video_with_the_tall_product(cls, monkeypatch):
    from capdistill.models.captioners import word_pick
    monkeypatch.setattr(word_pick, 'TALL_PRODUCT_MIN_BYTES', 0)
    head = make_head(cls, vocab=4000, eos_bias=3.0)
    memory, mask = make_memory()
    memory, mask = memory[1:2], mask[1:2]  # one (padded) video: 5 beam rows
    kw = dict(beam_size=5, length_penalty=1.0, banned_ids=[0, 1])
    assert torch.equal(beam_search(head, memory, mask, BOS, EOS, 9, **kw),
                       beam_search(head, memory, mask, BOS, EOS, 9, use_cache=False, **kw))


class RowCounter(EOSBiased):
    """Counts the rows fed through ``step`` (the decoding cost in rows x steps)."""

    def __init__(self, head, bias):
        super().__init__(head.head, bias)
        self.rows = []

    def step(self, tokens, state):
        self.rows.append(tokens.shape[0])
        return super().step(tokens, state)


@pytest.mark.parametrize('cls', HEADS)
def test_finished_rows_leave_the_computation(cls):
    """Greedy feeds each caption's own tokens only; beam drops a finished video's rows."""
    head = RowCounter(make_head(cls, seed=2), 2.0)
    memory, mask = make_memory(b=8, seed=2)
    ids = greedy_decode(head, memory, mask, BOS, EOS, 10)
    lengths = [(row.index(EOS) + 1) if EOS in row else 10 for row in ids.tolist()]
    assert len(set(lengths)) > 1  # captions of different lengths
    assert sum(head.rows) == sum(lengths)  # one row per video per token it generated
    assert head.rows == sorted(head.rows, reverse=True)
    # the same captions as a decode where every row runs to the end of the longest
    full = greedy_decode(head, memory, mask, BOS, EOS, 10, use_cache=False)
    assert torch.equal(ids, full)
    head.rows = []
    beam_search(head, memory, mask, BOS, EOS, 10, beam_size=3)
    assert head.rows[0] == 8 and head.rows[1] == 24 and head.rows[-1] < 24
    assert all(r % 3 == 0 for r in head.rows[1:])


def test_int8_shortlist_argmax_is_exact():
    """The int8 pass only narrows the candidates: the pick is the exact float argmax."""
    from capdistill.models.captioners.decoding import Int8Shortlist
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(20000, 64, generator=g) * 0.5
    short = Int8Shortlist(weight)
    banned = torch.zeros(20000, dtype=torch.bool)
    banned[[0, 1, 7]] = True
    hits = 0
    for trial in range(30):
        h = torch.randn(4, 64, generator=g) * (3.0 if trial % 2 else 1.0)
        best = (h @ weight.t()).masked_fill(banned, float('-inf')).argmax(-1)
        h[0] = weight[7] * 5  # the best word is banned: the next one must come back
        best[0] = (h[:1] @ weight.t()).masked_fill(banned, float('-inf')).argmax(-1)
        got = short.argmax(h, banned)
        if got is not None:
            hits += 1
            assert torch.equal(got, best)
    assert hits > 0
    short.max_candidates = 0  # too many candidates: the caller must score all words
    assert short.argmax(torch.randn(2, 64, generator=g), banned) is None


def record_picks(monkeypatch, picker):
    """The list that every ``picker.argmax`` answer (None included) is appended to."""
    picks = []
    argmax = picker.argmax
    monkeypatch.setattr(picker, 'argmax',
                        lambda self, h, banned, banned_words=None:
                        picks.append(argmax(self, h, banned, banned_words)) or picks[-1])
    return picks


@pytest.mark.parametrize('cls', HEADS)
def test_greedy_shortlist_gives_the_same_captions(cls, monkeypatch):
    from capdistill.models.captioners.decoding import Int8Shortlist
    picks = record_picks(monkeypatch, Int8Shortlist)
    head = make_head(cls, vocab=9000, scale=12.0).head
    memory, mask = make_memory()
    kw = dict(min_len=2, banned_ids=[0, 1])
    plain = greedy_decode(head, memory, mask, BOS, EOS, 9, shortlist=False, **kw)
    assert not picks
    fast = greedy_decode(head, memory, mask, BOS, EOS, 9, shortlist=['int8'], **kw)
    slow = greedy_decode(head, memory, mask, BOS, EOS, 9, use_cache=False, **kw)
    assert torch.equal(plain, fast) and torch.equal(fast, slow)
    assert any(p is not None for p in picks)  # the int8 pass did pick words


def trained_like_weight(vocab=20000, dim=64, used=60, seed=0):
    """An output layer shaped like a trained one: the few words the captions use have
    large, spread rows; the rest stay small (they only ever got pushed down)."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(vocab, dim, generator=g) * 0.05
    weight[:used] = torch.randn(used, dim, generator=g) * 1.5
    return weight


def test_vocabulary_groups_argmax_is_exact():
    """Only the groups that can win are read; the pick is the float argmax, the lowest
    id among equal scores, never a banned word."""
    from capdistill.models.captioners.decoding import VocabularyGroups
    weight = trained_like_weight()
    weight[7] = weight[3]  # equal scores for words 3 and 7: argmax gives 3
    groups = VocabularyGroups(weight)
    banned = torch.zeros(len(weight), dtype=torch.bool)
    banned[[0, 1, 5]] = True
    g = torch.Generator().manual_seed(1)
    picked = 0
    for trial in range(40):
        n = 1 if trial % 2 else 4
        h = torch.randn(n, 64, generator=g) * 3
        if trial % 5 == 0:
            h[0] = weight[5] * 4  # the best word is banned: the next one must come back
        if trial % 7 == 0:
            h[0] = weight[3] * 4
        for ban in (banned, None):
            full = h @ weight.t()
            if ban is not None:
                full = full.masked_fill(ban, float('-inf'))
            got = groups.argmax(h, ban)
            if got is not None:
                picked += 1
                assert torch.equal(got, full.argmax(-1)), trial
    assert picked >= 70  # a few random directions leave too many groups open
    # flat scores (random rows everywhere): too much to read, the caller scores all words
    flat = VocabularyGroups(torch.randn(20000, 64, generator=g))
    assert flat.argmax(torch.randn(1, 64, generator=g)) is None
    assert flat.argmax(torch.randn(3, 64, generator=g)) is None


def test_vocabulary_groups_decline_before_reading_too_much(monkeypatch):
    """When the rows' best-bounded groups alone hold more than the share the groups may
    read (many rows of flat scores), the pick is declined without scoring a word."""
    from capdistill.models.captioners.decoding import VocabularyGroups
    g = torch.Generator().manual_seed(2)
    flat = VocabularyGroups(torch.randn(20000, 64, generator=g))
    scored = []
    best = flat._best
    monkeypatch.setattr(flat, '_best', lambda h, rows, banned: scored.append(rows) or
                        best(h, rows, banned))
    assert flat.argmax(torch.randn(160, 64, generator=g)) is None
    assert scored == []
    # a trained-like layer still answers many rows, reading the groups they need
    groups = VocabularyGroups(trained_like_weight())
    monkeypatch.setattr(groups, '_best', lambda h, rows, banned: scored.append(rows) or
                        VocabularyGroups._best(groups, h, rows, banned))
    h = groups.weight[:40] * 4
    assert torch.equal(groups.argmax(h), (h @ groups.weight.t()).argmax(-1))
    assert scored


def test_vocabulary_groups_read_a_small_share(monkeypatch):
    """At batch 1 a trained-like output layer is read a few groups at a time."""
    from capdistill.models.captioners.decoding import VocabularyGroups
    weight = trained_like_weight()
    groups = VocabularyGroups(weight)
    read = []  # the rows of every matrix-vector product the pick runs, centres included
    mv, addmv = torch.mv, torch.addmv
    monkeypatch.setattr(torch, 'mv', lambda m, v: read.append(m.shape[0]) or mv(m, v))
    monkeypatch.setattr(torch, 'addmv',
                        lambda b, m, v: read.append(m.shape[0]) or addmv(b, m, v))
    h = weight[:60].mean(0, keepdim=True) + weight[11:12] * 2
    assert torch.equal(groups.argmax(h), (h @ weight.t()).argmax(-1))
    assert read and sum(read) < len(weight) // 20


def test_batch1_pick_settles_in_one_product_unless_a_large_group_can_win(monkeypatch):
    """At batch 1 one product scores the small groups' words and bounds the large groups:
    it answers alone when no bound reaches the best of those words, and the pick is still
    the float argmax (lowest id of equals, never a banned word) when it cannot."""
    from capdistill.models.captioners.decoding import VocabularyGroups
    weight = trained_like_weight()
    weight[7] = weight[3]  # equal scores: argmax gives 3
    groups = VocabularyGroups(weight)
    assert groups.first is not None and 3 in groups.first_ids and 7 in groups.first_ids
    products = []  # rows of each matrix-vector product a pick runs
    mv, addmv = torch.mv, torch.addmv
    monkeypatch.setattr(torch, 'mv', lambda m, v: products.append(m.shape[0]) or mv(m, v))
    monkeypatch.setattr(torch, 'addmv',
                        lambda b, m, v: products.append(m.shape[0]) or addmv(b, m, v))
    used = torch.linalg.qr(weight[:60].t())[0]  # (64, 60): the used words' span
    g = torch.Generator().manual_seed(2)
    for trial in range(40):
        if trial < 30:  # near a word the captions use (a small group), now and then banned
            h = weight[trial % 12][None] * 2 + torch.randn(1, 64, generator=g) * 0.3
        else:  # an unused word's row without the used words' span: a large group wins
            w = weight[100 + trial]
            h = (w - used @ (used.t() @ w))[None] * 50
        scores = h @ weight.t()
        banned = torch.zeros(len(weight), dtype=torch.bool)
        if trial % 3 == 0:
            banned[scores.argmax()] = True
        expected = scores.masked_fill(banned, float('-inf')).argmax(-1)
        products.clear()
        word = groups.argmax(h, banned, set(banned.nonzero()[:, 0].tolist()))
        assert word is None or torch.equal(word, expected), trial
        if trial < 30 and trial % 3:  # the first product alone
            assert word is not None and products == [groups.first.shape[0]], trial
        else:  # a banned best word or a reachable bound: the groups are read further
            assert len(products) > 1, trial
    assert groups.argmax(weight[3:4] * 2).tolist() == [3]  # not 7


@pytest.mark.parametrize('cls', HEADS)
def test_greedy_groups_give_the_same_captions(cls, monkeypatch):
    from capdistill.models.captioners.decoding import VocabularyGroups
    picks = record_picks(monkeypatch, VocabularyGroups)
    head = make_head(cls, vocab=9000).head
    with torch.no_grad():
        head.word_embed.weight.copy_(trained_like_weight(9000, 32, seed=3))
    memory, mask = make_memory()
    kw = dict(min_len=2, banned_ids=[0, 1])
    plain = greedy_decode(head, memory, mask, BOS, EOS, 9, shortlist=False, **kw)
    auto = greedy_decode(head, memory, mask, BOS, EOS, 9, **kw)  # 9,000 words: groups only
    slow = greedy_decode(head, memory, mask, BOS, EOS, 9, use_cache=False, **kw)
    assert torch.equal(plain, auto) and torch.equal(auto, slow)
    assert sum(p is not None for p in picks) >= len(picks) - 1  # the groups picked
    one = greedy_decode(head, memory[:1], mask[:1], BOS, EOS, 9, **kw)  # batch 1
    assert torch.equal(one, slow[:1, :one.shape[1]])


@pytest.mark.parametrize('cls', HEADS)
def test_greedy_scores_every_word_with_the_bans_when_the_groups_decline(cls, monkeypatch):
    """Flat scores over many rows: every pick is declined and the step scores all words,
    keeping the banned ids and EOS (before ``min_len``) out as the plain path does."""
    from capdistill.models.captioners.decoding import VocabularyGroups
    picks = record_picks(monkeypatch, VocabularyGroups)
    head = make_head(cls, vocab=9000, scale=1.0).head
    memory, mask = make_memory(b=40)
    free = greedy_decode(head, memory, mask, BOS, EOS, 9, shortlist=False)
    words, counts = free[free != EOS].unique(return_counts=True)
    common, second = words[counts.argsort(descending=True)[:2]].tolist()
    with torch.no_grad():  # EOS outscores the second most common word wherever it wins
        head.word_embed.weight[EOS] = head.word_embed.weight[second] * 1.5
    early = greedy_decode(head, memory, mask, BOS, EOS, 9, shortlist=False)
    assert (early[:, :3] == EOS).any()  # without min_len some captions end at once
    kw = dict(min_len=3, banned_ids=[common])
    plain = greedy_decode(head, memory, mask, BOS, EOS, 9, shortlist=False, **kw)
    picks.clear()
    auto = greedy_decode(head, memory, mask, BOS, EOS, 9, **kw)
    slow = greedy_decode(head, memory, mask, BOS, EOS, 9, use_cache=False, **kw)
    assert picks and all(p is None for p in picks)  # the float path ran every step
    assert torch.equal(plain, auto) and torch.equal(auto, slow)
    assert not (auto == common).any() and not (auto[:, :3] == EOS).any()


def test_unknown_word_picker_is_named():
    head = make_head(PrefixLMHead, vocab=9000).head
    memory, mask = make_memory()
    with pytest.raises(ValueError, match="Unknown word picker 'fp16'"):
        greedy_decode(head, memory, mask, BOS, EOS, 4, shortlist=['fp16'])


def test_default_pickers_follow_vocabulary_and_batch_size():
    """Groups from 4,096 words; the int8 shortlist from 16,384 words and for few videos
    only (on more rows its gathers cost more than float logits)."""
    from capdistill.models.captioners.word_pick import (Int8Shortlist, VocabularyGroups,
                                                        word_pickers)
    small = make_head(PrefixLMHead, vocab=1000).head
    mid = make_head(PrefixLMHead, vocab=9000).head
    wide = make_head(PrefixLMHead, vocab=20000).head
    one, eight = torch.zeros(1, 3, 32), torch.zeros(8, 3, 32)
    assert word_pickers(small, one, True) == []
    assert [type(p) for p in word_pickers(mid, one, True)] == [VocabularyGroups]
    kinds = [type(p) for p in word_pickers(wide, one, True)]
    assert kinds[0] is VocabularyGroups
    assert kinds[1:] == ([Int8Shortlist] if Int8Shortlist.supported(wide.output_weight) else [])
    assert [type(p) for p in word_pickers(wide, eight, True)] == [VocabularyGroups]
    assert word_pickers(wide, one, False) == [] and word_pickers(wide, one, True, False) == []


def test_word_pickers_asked_for_where_they_cannot_run_stop_the_decode():
    """None: used where they can run; named or True: they run or the decode stops."""
    from capdistill.models.captioners.word_pick import word_pickers
    head = make_head(PrefixLMHead, vocab=9000).head
    memory, mask = make_memory()
    assert word_pickers(head, memory, use_cache=False, wanted=None) == []
    with pytest.raises(ValueError, match=r"shortlist=\['groups'\].*reference loop"):
        greedy_decode(head, memory, mask, BOS, EOS, 4, use_cache=False, shortlist=['groups'])
    with pytest.raises(ValueError, match='shortlist=True.*float32 weights on the CPU'):
        greedy_decode(head.double(), memory.double(), mask, BOS, EOS, 4, shortlist=True)



def test_decoded_ids_are_ordinary_tensors():
    """The decoders run in inference mode but hand back ordinary tensors: the ids can
    index a layer that trains (sequence-level KD feeds generated captions back)."""
    head = make_head(PrefixLMHead, eos_bias=1.0)
    memory, mask = make_memory()
    for ids in (greedy_decode(head, memory, mask, BOS, EOS, 8),
                beam_search(head, memory, mask, BOS, EOS, 8, beam_size=3),
                *beam_search(head, memory, mask, BOS, EOS, 8, beam_size=3, return_scores=True)):
        assert not ids.is_inference()
    embed = torch.nn.Embedding(40, 4)
    embed(ids.long().clamp(min=0)).sum().backward()
    assert embed.weight.grad is not None


def test_beam_keeps_running_when_eos_is_held_back_in_the_weights():
    """tools/analysis/benchmark_decoding.py's beam-vs-rows row holds EOS back in a copy
    of the weights (not through ``min_len``, which lets the search skip its EOS test):
    EOS's logit is the same for every hidden state, every caption runs to the end."""
    import sys
    sys.path.insert(0, 'tools/analysis')
    from benchmark_decoding import eos_held_back

    class Model(torch.nn.Module):
        def __init__(self, head):
            super().__init__()
            self.head = head
            self.tokenizer = type('T', (), {'eos_id': EOS})

    for scale in (0.0, 1.0):  # a LayerNorm without and with bias
        head = make_head(PrefixLMHead).head
        with torch.no_grad():
            head.norm.weight.uniform_(0.5, 1.5)
            head.norm.bias.normal_().mul_(scale)
        held = eos_held_back(Model(head)).head
        memory, mask = make_memory()
        state = held.start(memory, mask)
        for word in (BOS, 5, 9):
            logits = held.step(torch.full((5,), word), state)
            torch.testing.assert_close(logits[:, EOS], torch.full((5,), -1e4), rtol=1e-4, atol=0)
        ids = beam_search(held, memory, mask, BOS, EOS, 8, beam_size=3, banned_ids=[0, 1])
        assert ids.shape[1] == 8 and (ids[:, :-1] != EOS).all()
        assert held is not head and not torch.equal(held.output_weight, head.output_weight)
