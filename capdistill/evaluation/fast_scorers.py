"""BLEU, ROUGE-L and CIDEr-D with pycocoevalcap's results, less interpreter work.

Each scorer takes pycocoevalcap's tokenised inputs (``gts``: id -> list of reference
strings, ``res``: id -> one-element list) and returns exactly what the matching
pycocoevalcap scorer returns. They differ only in how the integer parts are found:

* n-gram counts are built by :func:`ngram_counts` (C-level ``Counter`` over ``zip``),
  once per sentence, and shared by BLEU and CIDEr (:class:`NgramTable`);
* BLEU needs, per hypothesis n-gram, its largest count in any reference; only the
  hypothesis' own n-grams are looked up, and the floating point part is
  pycocoevalcap's ``BleuScorer.compute_score`` itself;
* ROUGE-L's longest common subsequence uses a bit-parallel algorithm (one integer
  operation per reference token instead of a table of ``len(ref) x len(hyp)``);
* CIDEr-D performs the same floating point operations in the same order as
  ``CiderScorer``.

Integers are exact whatever the method, and every float is produced by the same
operation on the same operands, so the results are bit-identical (tested).
"""
from collections import Counter
from itertools import chain

import numpy as np

__all__ = ['ngram_counts', 'NgramTable', 'FastBleu', 'FastRouge', 'FastCider']


def ngram_counts(words, n=4):
    """Counts of every 1..n-gram of ``words`` (tuples), in pycocoevalcap's key order.

    The keys come in the order pycocoevalcap's ``precook`` inserts them (all 1-grams
    left to right, then 2-grams, ...), which CIDEr's float sums depend on.
    """
    return Counter(chain.from_iterable(zip(*(words[i:] for i in range(k)))
                                       for k in range(1, n + 1)))


class NgramTable:
    """n-gram counts of every reference and hypothesis, computed once per call."""

    def __init__(self, gts, res, ids, n=4):
        self.n = n
        self.refs = [[ngram_counts(r.split(), n) for r in gts[i]] for i in ids]
        self.hyps = [ngram_counts(res[i][0].split(), n) for i in ids]


class FastBleu:
    """``pycocoevalcap.bleu.Bleu(4)`` (option 'closest') with the same result."""

    def __init__(self, n=4):
        self.n = n

    def compute_score(self, gts, res, ids, table=None):
        from pycocoevalcap.bleu.bleu_scorer import BleuScorer
        n = self.n
        table = table or NgramTable(gts, res, ids, n)
        scorer = BleuScorer(n=n)
        for i, refs, ref_counts, hyp in zip(ids, (gts[i] for i in ids), table.refs,
                                            table.hyps):
            testlen = len(res[i][0].split())
            correct = [0] * n
            seen = set().union(*ref_counts)
            for ngram, count in hyp.items():
                if ngram in seen:
                    if count > 1:
                        count = min(count, max(c.get(ngram, 0) for c in ref_counts))
                    correct[len(ngram) - 1] += count
            scorer.crefs.append(None)  # only their number is used when scoring
            scorer.ctest.append({
                'reflen': [len(r.split()) for r in refs],
                'testlen': testlen,
                'guess': [max(0, testlen - k + 1) for k in range(1, n + 1)],
                'correct': correct,
            })
        return scorer.compute_score(option='closest', verbose=0)


def lcs_length(a, b):
    """Length of the longest common subsequence of token lists ``a`` and ``b``.

    Bit-parallel (Hyyro 2004): bit i of ``v`` tracks row i of the usual dynamic
    programming table over ``a``; one addition per token of ``b`` updates all rows.
    """
    if not a or not b:
        return 0
    masks = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        u = v & masks.get(token, 0)
        v = (v + u) | (v - u)
    return len(a) - bin(v & full).count('1')


class FastRouge:
    """``pycocoevalcap.rouge.Rouge`` (ROUGE-L, beta 1.2) with the same result."""

    beta = 1.2

    def compute_score(self, gts, res, ids):
        beta = self.beta
        scores = []
        for i in ids:
            token_c = res[i][0].split(' ')
            prec, rec = [], []
            for reference in gts[i]:
                token_r = reference.split(' ')
                lcs = lcs_length(token_c, token_r)
                prec.append(lcs / float(len(token_c)))
                rec.append(lcs / float(len(token_r)))
            prec_max, rec_max = max(prec), max(rec)
            if prec_max != 0 and rec_max != 0:
                score = (((1 + beta**2) * prec_max * rec_max)
                         / float(rec_max + beta**2 * prec_max))
            else:
                score = 0.0
            scores.append(score)
        return np.mean(np.array(scores)), np.array(scores)


class FastCider:
    """CIDEr-D with the same result as ``pycocoevalcap.cider.Cider`` (n=4, sigma=6).

    Every float is produced by the same IEEE operation on the same operands, in the
    same order, as ``CiderScorer``, only on Python floats instead of numpy scalars
    (both are binary64; ``pow(x, 2)`` calls the C library's ``pow`` either way):
    ``ref_len - log(df)`` once per distinct n-gram, norms summed in the n-gram
    order, cosine terms summed in the hypothesis' n-gram order, the Gaussian length
    penalty as the same expression, and per-video means through numpy. n-grams
    absent from a reference add ``min(x, 0.0) * 0.0 == 0.0`` there and are skipped.
    """

    def __init__(self, n=4, sigma=6.0):
        self.n = n
        self.sigma = sigma

    def compute_score(self, gts, res, ids, table=None, doc_freq=None, num_docs=None):
        """``doc_freq``/``num_docs``: fixed document frequencies (n-gram -> count) over
        ``num_docs`` videos, e.g. of a training split (self-critical rewards); by
        default they come from ``gts`` as in pycocoevalcap."""
        n_max = self.n
        table = table or NgramTable(gts, res, ids, n_max)
        crefs, ctest = table.refs, table.hyps
        if doc_freq is None:
            # document frequency: in how many videos' references an n-gram occurs
            doc_freq = Counter(chain.from_iterable(set().union(*refs) for refs in crefs))
            # references that tokenise to nothing leave no n-grams at all
            assert len(ctest) >= max(doc_freq.values(), default=0)
            num_docs = len(crefs)
        ref_len = np.log(float(num_docs))
        log_df = {}
        weight = {}  # n-gram -> ref_len - log(max(1, df)), as CiderScorer computes it

        def counts2vec(cnts):
            vec = [{} for _ in range(n_max)]
            norm = [0.0] * n_max
            length = 0
            for ngram, term_freq in cnts.items():
                w = weight.get(ngram)
                if w is None:
                    df_count = doc_freq.get(ngram, 0)
                    df = log_df.get(df_count)
                    if df is None:
                        df = log_df[df_count] = np.log(max(1.0, float(df_count)))
                    w = weight[ngram] = float(ref_len - df)
                k = len(ngram) - 1
                value = float(term_freq) * w
                vec[k][ngram] = value
                norm[k] += pow(value, 2)
                if k == 1:
                    length += term_freq
            return vec, [float(np.sqrt(x)) for x in norm], length

        two_sigma2 = 2 * self.sigma**2
        scores = []
        for test, refs in zip(ctest, crefs):
            vec, norm, length = counts2vec(test)
            hyp_items = [list(v.items()) for v in vec]
            score = [0.0] * n_max
            for ref in refs:
                vec_ref, norm_ref, length_ref = counts2vec(ref)
                delta = float(length - length_ref)
                penalty = np.e**(-(delta**2) / two_sigma2)
                for k in range(n_max):
                    ref_k = vec_ref[k]
                    val = 0.0
                    for ngram, hyp_value in hyp_items[k]:
                        ref_value = ref_k.get(ngram)
                        if ref_value is not None:
                            val += min(hyp_value, ref_value) * ref_value
                    if norm[k] != 0 and norm_ref[k] != 0:
                        val /= (norm[k] * norm_ref[k])
                    val *= penalty
                    score[k] += val
            score_avg = np.mean(np.array(score))
            score_avg /= len(refs)
            score_avg *= 10.0
            scores.append(score_avg)
        return np.mean(np.array(scores)), np.array(scores)
