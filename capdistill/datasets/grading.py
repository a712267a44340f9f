"""Caption-quality grades in [0, 1], one per reference caption.

``tfidf`` (the reference code's choice): each caption's mean TF-IDF over its words,
with document frequencies over all captions of the annotation file, divided by the
highest value among its video's references, so the video's "teacher caption" (the
reference with the highest mean TF-IDF) has grade 1.

``consensus``: each caption's CIDEr-D (n = 1..4, Gaussian length penalty sigma = 6,
clipped counts, x10, as in pycocoevalcap) against the *other* references of its video,
with document frequencies over videos (each video's reference set counted once), then
divided by the highest value in the dataset. A video with a single reference has no
others to agree with: its caption gets grade 1.
"""
import math
from collections import Counter

import numpy as np

from .tokenizers import split_words


def tfidf_scores(captions):
    """Video id -> per-reference mean TF-IDF (unnormalised), given video id -> captions."""
    docs = [split_words(c) for caps in captions.values() for c in caps]
    df = Counter(w for d in docs for w in set(d))
    n = len(docs)
    idf = {w: math.log(n / c) for w, c in df.items()}
    out = {}
    for vid, caps in captions.items():
        scores = []
        for cap in caps:
            words = split_words(cap)
            if not words:
                scores.append(0.0)
                continue
            tf = Counter(words)
            # mean over the caption's distinct words of tf * idf
            scores.append(sum(tf[w] / len(words) * idf[w] for w in tf) / len(tf))
        out[vid] = scores
    return out


def tfidf_grades(captions):
    """Video id -> (grades in [0, 1], index of the teacher caption)."""
    out = {}
    for vid, scores in tfidf_scores(captions).items():
        top = int(np.argmax(scores))
        best = scores[top]
        out[vid] = ([s / best if best > 0 else 1.0 for s in scores], top)
    return out


def _ngrams(words, n=4):
    c = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            c[tuple(words[i:i + k])] += 1
    return c


def _vec(counts, df_log, ref_len):
    vec = [dict() for _ in range(4)]
    norm = [0.0] * 4
    for g, tf in counts.items():
        k = len(g) - 1
        w = tf * (ref_len - df_log.get(g, 0.0))
        vec[k][g] = w
        norm[k] += w * w
    return vec, [math.sqrt(x) for x in norm]


def cider_d_loo(captions, sigma=6.0):
    """Video id -> each reference's CIDEr-D against the other references of its video."""
    tok = {vid: [split_words(c) for c in caps] for vid, caps in captions.items()}
    grams = {vid: [_ngrams(w) for w in ws] for vid, ws in tok.items()}
    df = Counter()
    for gs in grams.values():
        df.update(set().union(*[set(g) for g in gs]) if gs else set())
    ref_len = math.log(max(len(grams), 1))
    df_log = {g: math.log(max(1.0, c)) for g, c in df.items()}
    out = {}
    for vid, gs in grams.items():
        vecs = [_vec(g, df_log, ref_len) for g in gs]
        lens = [len(w) for w in tok[vid]]
        scores = []
        for i, (vi, ni) in enumerate(vecs):
            others = [j for j in range(len(gs)) if j != i]
            if not others:
                scores.append(None)
                continue
            total = 0.0
            for j in others:
                vj, nj = vecs[j]
                delta = lens[i] - lens[j]
                sim = 0.0
                for k in range(4):
                    # n-grams absent from reference j would add min(v, 0.0) * 0.0 == 0:
                    # skipping them leaves the same sum, in the same order
                    vjk, dot = vj[k], 0
                    for g, v in vi[k].items():
                        r = vjk.get(g)
                        if r is not None:
                            dot += min(v, r) * r
                    if ni[k] and nj[k]:
                        sim += dot / (ni[k] * nj[k])
                total += sim * math.exp(-delta * delta / (2 * sigma * sigma))
            scores.append(total / len(others) / 4 * 10.0)
        out[vid] = scores
    return out


def consensus_grades(captions):
    """Video id -> consensus grades in [0, 1] (leave-one-out CIDEr-D / dataset max)."""
    raw = cider_d_loo(captions)
    best = max((s for v in raw.values() for s in v if s is not None), default=0.0)
    return {vid: [1.0 if s is None else (s / best if best > 0 else 1.0) for s in scores]
            for vid, scores in raw.items()}
