"""BLEU, ROUGE-L and CIDEr-D of capdistill.evaluation.fast_scorers vs pycocoevalcap.

The inputs are already tokenised (what the PTB tokenizer hands to the scorers), so
no Java is needed here; the comparison is exact (==), per video and aggregate.
"""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge, my_lcs

from capdistill.evaluation.fast_scorers import (FastBleu, FastCider, FastRouge, NgramTable,
                                                lcs_length, ngram_counts)

EXACT = settings(derandomize=True, database=None, deadline=None, max_examples=40,
                 suppress_health_check=[HealthCheck.too_slow])
# a small vocabulary so that n-grams repeat within and across captions
WORDS = st.sampled_from(['a', 'man', 'dog', 'is', 'running', 'the', 'on', 'grass', 'red', 'x'])
CAPTION = st.lists(WORDS, max_size=14).map(' '.join)
# double spaces and empty captions: pycocoevalcap's ROUGE splits on ' ' only
ODD_CAPTION = st.one_of(CAPTION, st.sampled_from(['', 'a  dog', ' a dog ', 'x']))
VIDEO = st.tuples(ODD_CAPTION, st.lists(ODD_CAPTION, min_size=1, max_size=6))


def _inputs(videos):
    ids = [f'v{i}' for i in range(len(videos))]
    gts = {v: refs for v, (_, refs) in zip(ids, videos)}
    res = {v: [hyp] for v, (hyp, _) in zip(ids, videos)}
    return gts, res, ids


def test_ngram_counts_match_pycocoevalcap_precook_order():
    from pycocoevalcap.bleu.bleu_scorer import precook
    words = 'a dog a dog runs a dog'.split()
    expected = precook(' '.join(words))[1]
    got = ngram_counts(words)
    assert list(got.items()) == list(expected.items())


@EXACT
@given(st.lists(WORDS, max_size=20), st.lists(WORDS, max_size=20))
def test_bit_parallel_lcs_equals_dynamic_programming(a, b):
    assert lcs_length(a, b) == my_lcs(a, b) == lcs_length(b, a)


@EXACT
@given(st.lists(VIDEO, min_size=1, max_size=8))
def test_scores_identical_to_pycocoevalcap(videos):
    gts, res, ids = _inputs(videos)
    table = NgramTable(gts, res, ids)

    bleu, bleu_videos = Bleu(4).compute_score(gts, res, verbose=0)
    fast, fast_videos = FastBleu(4).compute_score(gts, res, ids, table)
    assert list(fast) == list(bleu)
    assert [list(v) for v in fast_videos] == [list(v) for v in bleu_videos]

    rouge, rouge_videos = Rouge().compute_score(gts, res)
    fast, fast_videos = FastRouge().compute_score(gts, res, ids)
    assert fast == rouge and list(fast_videos) == list(rouge_videos)

    # pycocoevalcap's CIDEr asserts on references that tokenise to nothing
    if all(any(r.split() for r in refs) for _, refs in videos):
        cider, cider_videos = Cider().compute_score(gts, res)
        fast, fast_videos = FastCider().compute_score(gts, res, ids, table)
        assert fast == cider and list(fast_videos) == list(cider_videos)


def test_cider_identical_on_a_larger_corpus():
    """Many videos sharing n-grams: document frequencies and norms really vary."""
    import random
    rng = random.Random(0)
    vocab = 'a man woman dog cat is are running playing with the ball in park red'.split()

    def caption():
        return ' '.join(rng.choice(vocab) for _ in range(rng.randint(3, 12)))

    videos = [(caption(), [caption() for _ in range(rng.randint(1, 10))]) for _ in range(300)]
    gts, res, ids = _inputs(videos)
    cider, cider_videos = Cider().compute_score(gts, res)
    fast, fast_videos = FastCider().compute_score(gts, res, ids)
    assert fast == cider and list(fast_videos) == list(cider_videos)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert list(FastBleu(4).compute_score(gts, res, ids)[0]) == list(bleu)
