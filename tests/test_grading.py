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
