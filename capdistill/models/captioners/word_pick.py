"""Exact greedy word picks that read less than the whole output layer.

At batch 1 a greedy step is bound by reading the output layer (49,408 rows for CLIP's
vocabulary). Both pickers here return the word ``argmax(h @ W.T)`` would, over fewer
bytes, or None when they cannot narrow it down (flat distributions, e.g. untrained
weights), and the caller scores every word:

* :class:`VocabularyGroups`: the rows of ``W`` in k-means groups with a score bound per
  group; only groups whose bound reaches a known exact score are read. A trained model
  keeps the words it uses apart from the rest, so a pick reads tens of rows;
* :class:`Int8Shortlist`: an int8 copy of ``W`` (a quarter of the bytes) narrows the
  candidates, which get exact float scores.

:func:`word_pickers` chooses them for a decode; :func:`output_product` scores every word
when a step needs them all.
"""
import warnings
import weakref

import torch
import torch.nn.functional as F

NEG_INF = float('-inf')
#: greedy decoding picks words through :class:`VocabularyGroups` from this vocabulary size on
GROUPS_MIN_VOCAB = 4096
#: ... and through :class:`Int8Shortlist` from this size on (its fixed ~1.4 ms of small ops
#: per step broke even at ~16k words x 256: 0.8x at 10,000 words, 1.8x at 49,408)
SHORTLIST_MIN_VOCAB = 16384
#: ... for at most this many videos: on more rows its per-row candidate gathers cost more than
#: float logits (trained 49,408-word student: 8.3 vs 4.9 ms per video at batch 32, 11.2 vs
#: 11.4 at batch 8)
SHORTLIST_MAX_ROWS = 4

_PER_WEIGHT = {}  # (picker class, id(weight)) -> (weakref to it, its version, picker)


def _per_weight(cls, weight):
    """``cls(weight)``, made once and rebuilt when the weight changes in place."""
    key = (weight._version, weight.data_ptr(), tuple(weight.shape))
    hit = _PER_WEIGHT.get((cls, id(weight)))
    if hit is None or hit[0]() is not weight or hit[1] != key:
        for k in [k for k, v in _PER_WEIGHT.items() if v[0]() is None]:
            del _PER_WEIGHT[k]  # weights that are gone
        hit = (weakref.ref(weight), key, cls(weight))
        _PER_WEIGHT[(cls, id(weight))] = hit
    return hit[2]


#: a decoding step's output product for this many rows (beam search over one video: 5) ...
TALL_PRODUCT_ROWS = (1, 8)
#: ... over an output layer of at least this many bytes is taken as ``(W @ h.T).T``: MKL's
#: few-row product reads a layer this large 1.3-4x slower than the same product the other way
#: round (5 rows, 49,408 words: 3.8 -> 3.1 ms at width 128, 10.8 -> 5.2 ms at width 256 on an
#: AVX-512 CPU; 1.3-1.7x on an AVX2 one). ``tools/analysis/benchmark_decoding.py --rows
#: products`` times both on any CPU.
TALL_PRODUCT_MIN_BYTES = 16 * 2 ** 20
#: One row goes in padded to two only on AVX-512 CPUs: there its matrix-vector product was ~2x
#: slower than the two-column one from 16 MB on (9.9 vs 5.2 ms at 49,408 x 512; 1.3 vs 1.0 ms
#: at 16,384 x 256); on an AVX2 CPU the padding gained 4-19% at 24-64 MB and lost 5-45%
#: elsewhere (0.64x at 16 MB, 0.72x at 49,408 x 768)
PAD_ONE_ROW = torch.backends.cpu.get_cpu_capability().startswith('AVX512')


def takes_tall_product(h, weight):
    """Whether :func:`output_product` takes ``h @ weight.T`` as ``(weight @ h.T).T``.

    A traced step (the ONNX export) always takes the plain product: the int8 quantiser
    only quantises a product whose weight is the second operand."""
    return (not torch.jit.is_tracing() and h.device.type == 'cpu'
            and TALL_PRODUCT_ROWS[0] <= h.shape[0] <= TALL_PRODUCT_ROWS[1]
            and (h.shape[0] > 1 or PAD_ONE_ROW)
            and weight.numel() * weight.element_size() >= TALL_PRODUCT_MIN_BYTES)


def tall_product(h, weight, out=None):
    """``h @ weight.T`` computed as ``(weight @ h.T).T``, one row padded to two."""
    n = h.shape[0]
    if n == 1:
        h = torch.cat([h, h.new_zeros(1, h.shape[1])])
    tall = torch.mm(weight, h.t())[:, :n]  # (V, N)
    return tall.t().contiguous() if out is None else out.copy_(tall.t())


def output_product(h, weight, out=None):
    """``h @ weight.T`` for a step's hidden states ``h`` ``(N, E)``, into ``out`` if given,
    the way :func:`takes_tall_product` says."""
    if takes_tall_product(h, weight):
        return tall_product(h, weight, out)
    return F.linear(h, weight) if out is None else torch.mm(h, weight.t(), out=out)


def row_topk(x, k, chunk=64, out=None):
    """``x.topk(k, dim=-1)`` for a wide ``(N, V)`` matrix, in two cheap passes.

    The ``k`` largest entries of a row lie in the ``k`` chunks (of ``chunk``
    columns) with the largest maxima, so a max per chunk, a top-k over those maxima
    and a top-k over the ``k * chunk`` gathered entries find them; about 5x faster
    than ``torch.topk`` on a 49,408-word vocabulary. Equal values may come back in
    another order than ``torch.topk`` would give them. ``out``: ``(values, indices)``
    tensors to write (as ``torch.topk``'s).
    """
    n, v = x.shape
    main = v - v % chunk
    if main < 8 * k * chunk:
        return torch.topk(x, min(k, v), dim=-1, out=out)
    blocks = x[:, :main].reshape(n, main // chunk, chunk)
    best = blocks.amax(-1).topk(k, dim=-1).indices                     # (N, k)
    cand = blocks.gather(1, best[:, :, None].expand(-1, -1, chunk)).view(n, k * chunk)
    if main < v:  # the last, partial chunk is always a candidate
        cand = torch.cat([cand, x[:, main:]], dim=1)
    values, pos = cand.topk(k, dim=-1)
    in_block = pos < k * chunk
    block_pos = torch.where(in_block, pos, torch.zeros_like(pos))
    index = best.gather(1, block_pos // chunk) * chunk + block_pos % chunk
    index = torch.where(in_block, index, pos - k * chunk + main)
    if out is not None:
        return out[0].copy_(values), out[1].copy_(index)
    return values, index


class Int8Shortlist:
    """Exact argmax of ``h @ W.T`` that reads an int8 copy of a wide ``W``.

    At batch 1 a decoding step is bound by reading the output layer (49,408 x 512
    floats for CLIP's vocabulary); the int8 copy is a quarter of the bytes. Every
    word's int8 score ``a`` is within ``e`` of its exact score, with
    ``e = |W_v - Q_v|_2 |h|_2 + |Q_v|_1 s`` (weight rounding, Cauchy-Schwarz; input
    rounding of at most one step ``s`` of the dynamic int8 input scale, Hoelder), so
    the best word is among the words whose ``a + e`` reaches ``max(a - e)``; only
    those get exact float scores. Banned words are never candidates. When the
    candidates are too many (flat distributions, e.g. untrained weights) the exact
    scores of the whole vocabulary are needed instead (:meth:`argmax` says so). Needs
    PyTorch's x86/fbgemm quantized engine (checked by :meth:`supported`).
    """

    #: above this many candidates per row the whole vocabulary is scored exactly
    max_candidates = 256

    def __init__(self, weight):
        w = weight.detach().float().contiguous()
        scale = (w.abs().amax(1) / 127).clamp(min=1e-12).double()
        with warnings.catch_warnings():  # quantized tensors are marked for removal
            warnings.simplefilter('ignore', UserWarning)
            q = torch.quantize_per_channel(w, scale, torch.zeros_like(scale, dtype=torch.long),
                                           0, torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(q, None)
        deq = q.dequantize()
        self.err = (w - deq).norm(dim=1)
        self.l1 = deq.abs().sum(1)
        self.weight = w
        self.served = self.rows_read = 0  # picks answered, float rows read (benchmarks)

    @staticmethod
    def supported(weight):
        """Whether this PyTorch build can run the int8 pass for ``weight``."""
        return (weight.device.type == 'cpu' and weight.dtype == torch.float32
                and torch.backends.quantized.engine in ('x86', 'fbgemm')
                and hasattr(torch.ops.quantized, 'linear_dynamic'))

    @classmethod
    def of(cls, weight):
        """The shortlist of ``weight``, rebuilt when the weight changes in place."""
        return _per_weight(cls, weight)

    def argmax(self, h, banned=None, banned_words=None):
        """Index of the largest exact score per row of ``h`` ``(N, E)`` (``banned``: a
        boolean ``(V,)`` mask or None; ``banned_words`` unused here, see
        :meth:`VocabularyGroups.argmax`), or None when the candidates are too many."""
        h = h.float().contiguous()
        # reduce_range keeps fbgemm's int16 pair sums from saturating
        approx = torch.ops.quantized.linear_dynamic(h, self.packed, True)
        step = (h.amax().clamp(min=0) - h.amin().clamp(max=0)) / 127
        margin = torch.addcmul(self.l1 * step, self.err, h.norm(dim=1, keepdim=True))
        margin = margin.add_(approx.abs(), alpha=1e-5).add_(1e-5)  # float rounding
        if banned is not None:
            approx.masked_fill_(banned, NEG_INF)
        lower = (approx - margin).amax(1, keepdim=True)
        upper = approx.add_(margin)
        count = int((upper >= lower).sum(1).max())
        if count > self.max_candidates:
            return None
        cand = row_topk(upper, count)[1]                            # (N, C)
        exact = torch.bmm(self.weight[cand], h[:, :, None])[..., 0]  # (N, C)
        if banned is not None:
            exact.masked_fill_(banned[cand], NEG_INF)
        self.served += 1
        self.rows_read += cand.numel()
        return cand.gather(1, exact.argmax(-1, keepdim=True))[:, 0]


class VocabularyGroups:
    """Exact argmax of ``h @ W.T`` that scores only the groups of words that can win.

    The rows of ``W`` are split into k-means groups once per weight. No word of a group
    with centre ``c`` and radius ``r`` (its largest ``|W_v - c|``) scores above
    ``h.c + |h| r`` (Cauchy-Schwarz). Each row's best-bounded group is scored exactly;
    a group is read only if its bound reaches that score. Equal best scores resolve to
    the lowest word id, as ``argmax`` does. Returns None when the groups to read hold more
    than ``max_share`` of the vocabulary.
    """

    max_share = 0.25
    #: groups read one by one at batch 1 before the general path takes over
    probe = 4
    #: relative slack on every bound, above float32 rounding of the dot products
    rounding = 1e-4
    #: batch 1 first scores every row of the groups this small (if they hold at most
    #: ``small_rows_limit`` rows in all) in the product that bounds the other groups
    small_rows = 8
    small_rows_limit = 1024

    def __init__(self, weight, groups=64, iters=8, fit_rows=8192):
        w = weight.detach().float().contiguous()
        v = w.shape[0]
        g = torch.Generator().manual_seed(0)
        # centres fitted on a sample of rows (a full-vocabulary fit groups no better
        # and costs 4x more), then every row goes to its nearest centre
        fit = w[torch.randperm(v, generator=g)[:fit_rows]]
        centres = self._spread_seeds(fit, min(groups, v), g)
        for _ in range(iters):
            near = self._nearest(fit, centres)
            count = torch.bincount(near, minlength=centres.shape[0])
            sums = torch.zeros_like(centres).index_add_(0, near, fit)
            used = count > 0
            centres[used] = sums[used] / count[used, None]
        # rows left out of the fit can sit far from every centre and would widen
        # their group's radius for all; the farthest rows become centres themselves
        far = self._nearest(w, centres, with_dist=True)[1].topk(min(groups, v)).indices
        centres = torch.cat([centres, w[far]])
        near = self._nearest(w, centres)
        order = torch.argsort(near, stable=True)
        count = torch.bincount(near, minlength=centres.shape[0])
        used = count > 0
        centres, count = centres[used], count[used]
        near = (used.long().cumsum(0) - 1)[near]  # group ids without the empty ones
        radius = torch.zeros(len(centres), device=w.device).scatter_reduce_(
            0, near, (w - centres[near]).norm(dim=1), 'amax')
        self.centres = centres
        self.slack = radius + self.rounding * (centres.norm(dim=1) + radius)
        self.ids = order                      # vocabulary id of each sorted row
        self.id_list = order.tolist()
        self.sorted = w[order].contiguous()   # rows of W, group after group
        ends = count.cumsum(0).tolist()
        self.spans = list(zip([0] + ends[:-1], ends))
        self.group_rows = [self.sorted[a:e] for a, e in self.spans]  # views, made once
        self.limit = self.max_share * v
        self.weight = w
        self._batch1_product(w, order)
        self.served = self.rows_read = 0  # picks answered, rows of W read (benchmarks)

    def _batch1_product(self, w, order):
        """The matrix of a batch-1 pick's first product: the large groups' centres, then
        every row of the small groups (lowest word id first), and the large groups' slack
        beside it (zero for the rows: their scores are exact). A trained model's words sit
        in small groups of their own, so this one product usually settles the pick."""
        small = [(e - s) <= self.small_rows for s, e in self.spans]
        rows = [i for j, (s, e) in enumerate(self.spans) if small[j] for i in range(s, e)]
        self.first = None
        if not rows or len(rows) > self.small_rows_limit:
            return
        large = torch.tensor([not f for f in small], device=w.device)
        ids = order[torch.tensor(rows, device=w.device)].sort().values
        self.first = torch.cat([self.centres[large], w[ids]])
        self.first_slack = torch.cat([self.slack[large], self.slack.new_zeros(len(ids))])
        self.first_bounds = int(large.sum())   # the product's rows that are bounds
        self.first_ids = ids.tolist()          # word ids of the rows after them
        self.first_words = ids.split(1)        # the same, as the pick returns them

    @staticmethod
    def _spread_seeds(x, k, g):
        """k-means++ seeds: each next seed drawn with odds by squared distance to the
        nearest seed so far, so the few far-out rows of the words a model uses get
        groups of their own instead of widening the groups of the many others."""
        sq = x.pow(2).sum(1)

        def dist_to(i):  # squared distances to row i as |x|^2 - 2 x.x_i + |x_i|^2 (one mv)
            return torch.addmv(sq + sq[i], x, x[i], alpha=-2).clamp_(min=0)
        seeds = [int(torch.randint(len(x), (1,), generator=g))]
        dist = dist_to(seeds[0])
        for _ in range(k - 1):
            if not bool(dist.gt(0).any()):
                break  # fewer distinct rows than groups
            seeds.append(int(torch.multinomial(dist, 1, generator=g)))
            torch.minimum(dist, dist_to(seeds[-1]), out=dist)
        return x[seeds].clone()

    @staticmethod
    def _nearest(x, centres, with_dist=False):
        """Nearest centre of every row (and the squared distance to it, up to rounding)."""
        near = torch.addmm(centres.pow(2).sum(1), x, centres.t(), alpha=-2).min(1)
        if with_dist:
            return near.indices, (near.values + x.pow(2).sum(1)).clamp_(min=0)
        return near.indices

    @classmethod
    def of(cls, weight):
        """The groups of ``weight``, rebuilt when the weight changes in place."""
        return _per_weight(cls, weight)

    def _rows(self, groups):
        if len(groups) == 1:
            s, e = self.spans[groups[0]]
            return slice(s, e)
        return torch.cat([torch.arange(*self.spans[j]) for j in groups]).to(self.ids.device)

    def _best(self, h, rows, banned):
        """Exact best score and word per row of ``h`` over the sorted ``rows``."""
        scores = h @ self.sorted[rows].t()
        ids = self.ids[rows]
        if banned is not None:
            scores.masked_fill_(banned[ids], NEG_INF)
        best = scores.amax(1, keepdim=True)
        ids = torch.where(scores == best, ids, self.ids.numel()).amin(1)
        return best, ids

    def argmax(self, h, banned=None, banned_words=None):
        """Index of the largest exact score per row of ``h`` ``(N, E)`` (``banned``: a
        boolean ``(V,)`` mask or None; ``banned_words``: the same ids as a host set, if
        the caller has one, so batch 1 tests its pick without a tensor read), or None
        when too many groups can win."""
        if h.shape[0] == 1:
            word = self._one(h[0], banned, banned_words)
            if word is not None:
                return word
        bound = torch.addmm(h.norm(dim=1, keepdim=True) * self.slack, h, self.centres.t())
        first = sorted(set(bound.argmax(1).tolist()))
        read = self._size(first)
        if read > self.limit:
            # each row's best-bounded group is among the groups it must read, so there
            # is already too much to read: decline before reading any of it
            return None
        best, ids = self._best(h, self._rows(first), banned)
        need = (bound >= best).any(0).nonzero()[:, 0].tolist()
        if not set(need) <= set(first):
            if self._size(need) > self.limit:
                return None
            ids = self._best(h, self._rows(need), banned)[1]
            read += self._size(need)
        self.served += 1
        self.rows_read += read
        return ids

    def _size(self, groups):
        return sum(self.spans[j][1] - self.spans[j][0] for j in groups)

    def _one(self, h, banned, banned_words):
        """Batch 1 in a few small ops. First one product scores the small groups' words and
        bounds the large groups: if no bound reaches the best of those words, it is the
        pick. Else the best-bounded groups are read one by one until the next bound falls
        below the best score so far. None (the caller takes the general path) when more
        than ``probe`` groups would be needed or the best word is banned."""
        norm = torch.linalg.vector_norm(h)
        if self.first is not None:
            scores = torch.addmv(self.first_slack * norm, self.first, h).tolist()
            k = self.first_bounds
            best = max(scores[k:])
            if not k or max(scores[:k]) < best:
                at = scores.index(best, k) - k  # the lowest id of equal scores
                word = self.first_ids[at]
                if banned is None or not (word in banned_words if banned_words is not None
                                          else bool(banned[word])):
                    self.served += 1
                    self.rows_read += len(self.first_ids)
                    return self.first_words[at]
        bound = torch.addmv(self.slack * norm, self.centres, h)
        top, group = bound.topk(min(self.probe + 1, len(self.spans)))
        best, at, read = NEG_INF, None, 0
        for i, (b, j) in enumerate(zip(top.tolist(), group.tolist())):
            if b < best:
                break  # no group from here on can reach the best score
            if i == self.probe:
                return None
            s, e = self.spans[j]
            scores = torch.mv(self.group_rows[j], h).tolist()
            read += e - s
            top_score = max(scores)
            top_at = s + scores.index(top_score)  # the lowest id of equal scores
            if top_score > best or (top_score == best
                                    and self.id_list[top_at] < self.id_list[at]):
                best, at = top_score, top_at
        if banned is not None and (self.id_list[at] in banned_words if banned_words is not None
                                   else bool(banned[self.id_list[at]])):
            return None
        self.served += 1
        self.rows_read += read
        return self.ids[at:at + 1]


PICKERS = {'groups': (VocabularyGroups, GROUPS_MIN_VOCAB),
           'int8': (Int8Shortlist, SHORTLIST_MIN_VOCAB)}


def word_pickers(head, memory, use_cache, wanted=None):
    """The pickers a greedy decode should try, in order (an empty list: score every word).

    ``wanted``: None picks by vocabulary size (:data:`GROUPS_MIN_VOCAB`,
    :data:`SHORTLIST_MIN_VOCAB`) and, for the int8 shortlist, batch size
    (:data:`SHORTLIST_MAX_ROWS`), where they can run; False none; True both, or names
    from :data:`PICKERS`: those must run (a ValueError says why they cannot). They run
    on the cached path, for a head exposing ``output_weight``, float32 on the CPU
    outside autocast.
    """
    if wanted is False:
        return []
    weight = getattr(head, 'output_weight', None)
    why = None
    if not use_cache:
        why = 'the reference loop (use_cache=False) scores every word'
    elif weight is None:
        why = f'{type(head).__name__} has no output_weight'
    elif weight.device.type != 'cpu' or weight.dtype != torch.float32 \
            or memory.dtype != torch.float32 or torch.is_autocast_enabled(memory.device.type):
        why = 'they need float32 weights on the CPU, outside autocast'
    names = list(PICKERS) if wanted in (None, True) else list(wanted)
    unknown = [n for n in names if n not in PICKERS]
    if unknown:
        raise ValueError(f'Unknown word picker {unknown[0]!r}; use one of {sorted(PICKERS)}.')
    if why is None and 'int8' in names and not Int8Shortlist.supported(weight):
        if wanted is not None:
            why = "the int8 shortlist needs PyTorch's x86/fbgemm quantized engine"
        names.remove('int8')
    if why is not None:
        if wanted is None:
            return []
        raise ValueError(f'shortlist={wanted!r}: the word pickers cannot run here: {why}; '
                         'use shortlist=None (they run where they can) or False.')
    out = []
    for name in names:
        cls, min_vocab = PICKERS[name]
        if wanted is None and (weight.shape[0] < min_vocab or (
                cls is Int8Shortlist and memory.shape[0] > SHORTLIST_MAX_ROWS)):
            continue
        out.append(cls.of(weight))
    return out


_MASKS = {}  # (vocabulary size, banned ids, EOS id, device) -> the two masks


def banned_masks(vocab_size, banned_ids, eos_id, device):
    """Boolean ``(V,)`` masks of the banned words, without and with EOS (banned before
    ``min_len``), made once per setting: read-only, shared by every decode."""
    key = (int(vocab_size), tuple(sorted(set(banned_ids or ()))), int(eos_id), str(device))
    if key not in _MASKS:
        banned = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        banned[list(key[1])] = True
        banned_eos = banned.clone()
        banned_eos[eos_id] = True
        if len(_MASKS) > 64:
            _MASKS.clear()
        _MASKS[key] = (banned, banned_eos)
    return _MASKS[key]
