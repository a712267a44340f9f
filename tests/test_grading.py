"""Caption grades: TF-IDF (teacher caption) and consensus (leave-one-out CIDEr-D)."""
import math

import pytest

from capdistill.datasets.grading import cider_d_loo, consensus_grades, tfidf_grades, tfidf_scores

CAPS = {'v1': ['a man is cooking', 'a man is cooking pasta in a kitchen', 'a man'],
        'v2': ['a dog runs', 'a dog runs fast', 'a cat sleeps'],
        'v3': ['only one reference']}


def test_tfidf_hand_computed():
    scores = tfidf_scores(CAPS)
    n = 7  # captions in the dataset
    # "a man": df(a)=6, df(man)=3 -> mean over distinct words of tf*idf
    expected = (0.5 * math.log(n / 6) + 0.5 * math.log(n / 3)) / 2
    assert scores['v1'][2] == pytest.approx(expected)
    grades = tfidf_grades(CAPS)
    g, top = grades['v1']
    assert g[top] == 1.0 and all(0 <= x <= 1 for x in g)
    assert grades['v3'] == ([1.0], 0)


def test_consensus_cider_d():
    raw = cider_d_loo({'a': ['x y z', 'x y z'], 'b': ['p q', 'r s']})
    # identical captions of equal length -> every n-gram matches: CIDEr-D of 10 * (n-grams
    # present)/4 only if idf > 0; here df=1 of 2 videos, so the score is positive
    assert raw['a'][0] == pytest.approx(raw['a'][1]) and raw['a'][0] > 0
    assert raw['b'] == [0.0, 0.0]
    grades = consensus_grades(CAPS)
    assert grades['v3'] == [1.0]  # nothing to agree with
    flat = [x for v in grades.values() for x in v]
    assert max(flat) == 1.0 and min(flat) >= 0
    # the odd one out agrees least with its video's other references
    assert grades['v2'][2] < min(grades['v2'][:2])


def test_cider_d_hand_computed():
    # identical two-word captions: unigram and bigram cosines are 1, no 3/4-grams, no
    # length penalty -> 10 * (1 + 1 + 0 + 0) / 4 (pycocoevalcap's CIDEr-D arithmetic)
    raw = cider_d_loo({'a': ['x y', 'x y'], 'b': ['p', 'q']})
    assert raw['a'] == [pytest.approx(5.0)] * 2
    # a length difference of 2 words costs exp(-4 / 72)
    raw = cider_d_loo({'a': ['x y', 'x y z w'], 'b': ['p', 'q']})
    assert raw['a'][0] < 5.0


def _loo_reference(captions, sigma=6.0):
    """The leave-one-out CIDEr-D written plainly (every n-gram looked up in both)."""
    from capdistill.datasets.grading import _ngrams, _vec
    from capdistill.datasets.tokenizers import split_words
    grams = {v: [_ngrams(split_words(c)) for c in caps] for v, caps in captions.items()}
    df = {}
    for gs in grams.values():
        for g in set().union(*map(set, gs)):
            df[g] = df.get(g, 0) + 1
    df_log = {g: math.log(max(1.0, c)) for g, c in df.items()}
    ref_len = math.log(len(grams))
    out = {}
    for vid, gs in grams.items():
        vecs = [_vec(g, df_log, ref_len) for g in gs]
        lens = [len(split_words(c)) for c in captions[vid]]
        scores = []
        for i, (vi, ni) in enumerate(vecs):
            total = 0.0
            for j, (vj, nj) in enumerate(vecs):
                if j == i:
                    continue
                sim = 0.0
                for k in range(4):
                    dot = sum(min(v, vj[k].get(g, 0.0)) * vj[k].get(g, 0.0)
                              for g, v in vi[k].items())
                    if ni[k] and nj[k]:
                        sim += dot / (ni[k] * nj[k])
                total += sim * math.exp(-(lens[i] - lens[j])**2 / (2 * sigma * sigma))
            scores.append(total / (len(gs) - 1) / 4 * 10.0 if len(gs) > 1 else None)
        out[vid] = scores
    return out


def test_leave_one_out_cider_d_equals_the_plain_formula():
    import random
    rng = random.Random(0)
    words = 'a man woman dog is are playing running the ball in park red quickly'.split()
    caps = {f'v{i}': [' '.join(rng.choice(words) for _ in range(rng.randint(1, 9)))
                      for _ in range(rng.randint(1, 6))] for i in range(40)}
    assert cider_d_loo(caps) == _loo_reference(caps)
