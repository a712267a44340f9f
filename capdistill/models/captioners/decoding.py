"""Caption decoding over any head that has ``forward``/``start``/``step``/``reorder``.

Two strategies, both batched:

* :func:`greedy_decode`: the most likely next word at each step;
* :func:`beam_search`: ``beam_size`` hypotheses per video, all videos x beams in one
  batch of ``B * K`` rows through the head's key/value cache.

Finished captions stop costing: a greedy row leaves the batch (and the cache) when it
emits EOS, a video's ``K`` beam rows when no live beam can beat its best finished
caption, so a decode's cost follows the captions' actual lengths. Greedy picks words on
a wide vocabulary through the pickers of :mod:`.word_pick` (the same words, fewer bytes
read), and decodes one video through the head's ``one_video_decoder`` where it has one
(:mod:`.one_video`: the same steps in fewer tensor ops).

Both take ``use_cache=False`` for the reference implementation's decoding loop (kept
for checking): for every new token the whole head runs over a caption buffer of the full
``max_steps`` length (the words so far, then filler that the causal mask hides) and
computes logits at every position, of which the current one is used.

Score of a finished caption ``y_1..y_L`` (``L`` counts EOS when there is one; a caption
that reaches ``max_steps`` without EOS ends there)::

    score = sum_t log p(y_t | y_<t) / L ** length_penalty

with ``log p`` the log-softmax over the *whole* vocabulary; banned tokens, EOS before
``min_len`` and repeated n-grams are excluded from the search but not renormalised.
"""
import functools

import torch
import torch.nn.functional as F

from capdistill.utils.requirements import ModelConfigError
from capdistill.utils.values import is_int, is_real
from .word_pick import (GROUPS_MIN_VOCAB, NEG_INF, SHORTLIST_MIN_VOCAB,  # noqa: F401
                        PICKERS, Int8Shortlist, VocabularyGroups, banned_masks,
                        output_product, row_topk, word_pickers)


def _inference(fn):
    """Run a decoder in inference mode, where each tensor op costs less than under
    ``no_grad`` (no version counters: ~0.5 us of a ~3 us op at batch 1), and hand back
    ordinary tensors: callers may feed the ids to autograd (sequence-level KD)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        if torch.is_inference_mode_enabled():
            return fn(*args, **kwargs)
        with torch.inference_mode():
            out = fn(*args, **kwargs)
        return tuple(t.clone() for t in out) if isinstance(out, tuple) else out.clone()
    return run


class DecodeSettingsError(ModelConfigError):
    """A decoding setting no search can run with (one line, naming the setting)."""


# each setting of a model's ``decode`` (and of ``generate(**decode)``): whether a value
# is valid, and what a valid one is
_DECODE_RULES = dict(
    strategy=(lambda v: v in ('greedy', 'beam'), "'greedy' or 'beam'"),
    beam_size=(lambda v: is_int(v) and v >= 1, 'an integer >= 1 (hypotheses per video)'),
    length_penalty=(is_real, 'a finite number (0: sum of log-probabilities, 1: mean)'),
    min_len=(lambda v: is_int(v) and v >= 0, 'an integer >= 0 (words before EOS)'),
    no_repeat_ngram=(lambda v: v is None or (is_int(v) and v >= 0),
                     'an integer >= 0 (0: off)'),
    use_cache=(lambda v: isinstance(v, bool), 'True or False'),
    ban_special=(lambda v: isinstance(v, bool), 'True or False'),
    banned_ids=(lambda v: v is None or (isinstance(v, (list, tuple, set))
                                        and all(is_int(i) and i >= 0 for i in v)),
                'a list of token ids'),
    shortlist=(lambda v: v is None or isinstance(v, bool) or (
        isinstance(v, (list, tuple)) and all(n in PICKERS for n in v)),
               f'None, True, False or a list of {sorted(PICKERS)}'),
)


def check_decode_settings(settings, vocab_size=None, path='decode', source=None):
    """Raise :class:`DecodeSettingsError` for a decoding setting that is unknown or has a
    value no search can run with; ``vocab_size`` also bounds ``banned_ids``. The message
    names a setting ``path.key`` (e.g. ``model.decode.beam_size``), after ``source`` (the
    file it came from) when given."""
    where = f'{source}: ' if source else ''
    for key, value in settings.items():
        rule = _DECODE_RULES.get(key)
        if rule is None:
            raise DecodeSettingsError(f'{where}unknown decoding setting {path}.{key}; the '
                                      f'settings are {", ".join(sorted(_DECODE_RULES))}')
        valid, what = rule
        if not valid(value):
            raise DecodeSettingsError(f'{where}decoding setting {path}.{key}={value!r}: it '
                                      f'must be {what}')
        if key == 'banned_ids' and value and vocab_size is not None \
                and max(value) >= vocab_size:
            raise DecodeSettingsError(f'{where}decoding setting {path}.banned_ids: id '
                                      f'{max(value)} is past the vocabulary ({vocab_size} words)')


@torch.no_grad()
def decode(head, memory, mem_mask, bos_id, eos_id, max_steps, strategy='greedy',
           beam_size=1, **kwargs):
    """Dispatch on ``strategy`` ('greedy' or 'beam'); beam with ``beam_size`` 1 is greedy."""
    if strategy == 'greedy' or (strategy == 'beam' and beam_size == 1
                                and not kwargs.get('no_repeat_ngram')):
        kwargs.pop('length_penalty', None)
        kwargs.pop('no_repeat_ngram', None)
        return greedy_decode(head, memory, mem_mask, bos_id, eos_id, max_steps, **kwargs)
    if strategy == 'beam':
        kwargs.pop('shortlist', None)  # beam scores need the whole distribution
        return beam_search(head, memory, mem_mask, bos_id, eos_id, max_steps,
                           beam_size=beam_size, **kwargs)
    raise ValueError(f"Unknown decoding strategy {strategy!r}; use 'greedy' or 'beam'.")


class _Stepper:
    """Next-token logits for a growing batch of prefixes, with or without the cache."""

    def __init__(self, head, memory, mem_mask, bos_id, use_cache, max_steps, one_video=False):
        self.head, self.use_cache = head, use_cache
        self.memory, self.mem_mask = memory, mem_mask
        self.state, self.step = None, head.step
        # one video (greedy): the head's decoder for that case, where it has one
        decoder = head.one_video_decoder(memory, mem_mask, max_steps) if (
            use_cache and one_video and hasattr(head, 'one_video_decoder')) else None
        if decoder is not None:  # one row: greedy never re-orders it (its EOS ends the decode)
            self.state, self.step = {}, decoder.step
        elif use_cache:
            self.state = head.start(memory, mem_mask)
            if bool(mem_mask.all()):
                # no padding: attention needs no mask (the scores are the same, and
                # building and applying it is ~5% of a batch-1 step)
                self.state['dense'] = True
        self.length, self.filler = max_steps, bos_id
        # logits may go to one buffer kept across steps only where they are float32
        # (decided once: the autocast query costs microseconds at every step)
        self.reusable = use_cache and memory.dtype == torch.float32 \
            and not torch.is_autocast_enabled(memory.device.type)
        self.out = self.out_rows = None

    def __call__(self, tokens, reuse_output=False):
        """Logits ``(N, V)`` for the next position. ``tokens``: on the cached path each
        row's last token ``(N,)``; on the reference loop the words so far ``(N, t)``,
        BOS first.

        ``reuse_output``: write the logits into one buffer kept across steps (the
        caller must be done with the previous step's logits); allocating a fresh
        ``(N, V)`` tensor per step costs page faults when ``N x V`` is large.
        """
        if self.use_cache:
            self.state.pop('logits_out', None)
            if reuse_output and self.reusable:
                self.state['logits_out'] = self.buffer(tokens.shape[0])
            return self.step(tokens, self.state)
        # the reference loop: a fixed-length buffer, the whole head, every position's
        # logits; positions after t cannot change position t (causal attention)
        n, t = tokens.shape
        buffer = tokens.new_full((n, max(self.length, t)), self.filler)
        buffer[:, :t] = tokens
        return self.head(self.memory, self.mem_mask, buffer)[:, t - 1]

    def buffer(self, n):
        """A ``(n, V)`` float tensor reused across steps."""
        if self.out_rows is None or self.out_rows.shape[0] != n:
            if self.out is None or self.out.shape[0] < n:
                self.out = self.memory.new_empty(n, self.head.vocab_size)
            self.out_rows = self.out[:n]
        return self.out_rows

    def reorder(self, index):
        if self.use_cache:
            self.state = self.head.reorder(self.state, index)
        else:
            self.memory = self.memory.index_select(0, index)
            self.mem_mask = self.mem_mask.index_select(0, index)


def _index(ids, device):
    """Token ids as a tensor made once per decode, or None for none."""
    ids = sorted(set(int(i) for i in ids or ()))
    return torch.tensor(ids, dtype=torch.long, device=device) if ids else None


def _bans(banned_ids, eos_id, device):
    """The ids to mask at every step, and those plus EOS (before ``min_len``): one
    ``index_fill_`` per step either way."""
    return _index(banned_ids, device), _index(list(banned_ids or ()) + [eos_id], device)


def _constrain(logp, ids, hist, no_repeat_ngram):
    """Set -inf on tokens the search may not pick: ``ids`` (one of :func:`_bans`) and, with
    ``no_repeat_ngram``, the words that would repeat an n-gram of ``hist`` ``(N, step)``
    (BOS excluded; None without n-gram blocking)."""
    if ids is not None:
        logp.index_fill_(1, ids, NEG_INF)
    n = no_repeat_ngram or 0
    if n > 0 and hist.shape[1] >= n:
        windows = hist.unfold(1, n, 1)                       # (N, W, n)
        tail = hist[:, hist.shape[1] - n + 1:]               # (N, n-1)
        match = (windows[:, :, :-1] == tail[:, None]).all(-1) if n > 1 else \
            torch.ones(windows.shape[:2], dtype=torch.bool, device=hist.device)
        hits = torch.zeros_like(logp, dtype=torch.int32)
        hits.scatter_add_(1, windows[:, :, -1], match.to(torch.int32))
        logp.masked_fill_(hits > 0, NEG_INF)
    return logp


@_inference
def greedy_decode(head, memory, mem_mask, bos_id, eos_id, max_steps, use_cache=True,
                  min_len=0, banned_ids=None, shortlist=None):
    """Most likely next word at each step, for a batch of videos.

    Args:
        max_steps (int): most tokens generated per caption, EOS included.
        use_cache (bool): feed one new token per step through the key/value cache;
            False re-runs the whole head over a full-length caption buffer every
            step, as the reference implementation does (slow, kept for checking).
        min_len (int): EOS is not allowed before this many tokens.
        banned_ids (iterable, optional): ids never generated (e.g. PAD, BOS).
        shortlist (bool or list, optional): pick each word through the exact pickers
            of :mod:`.word_pick` (same words, far fewer output-layer bytes read):
            None by vocabulary size (:class:`VocabularyGroups` from
            ``GROUPS_MIN_VOCAB`` words, then :class:`Int8Shortlist` from
            ``SHORTLIST_MIN_VOCAB``), True both, False neither, or a list of names
            (``'groups'``, ``'int8'``). Cached path, float32 on the CPU only.

    Returns:
        LongTensor ``(B, <=max_steps)``: generated ids; after EOS, EOS repeats.
    """
    b = memory.shape[0]
    # each caption's words as a host list (the EOS test reads every step's words there
    # anyway); the rows still decoding, as indices into the batch: a row that emits EOS
    # leaves the computation, so the cost follows the actual caption lengths
    captions, live = [[] for _ in range(b)], list(range(b))
    # the cached path feeds the last tokens only
    tokens = torch.full((b,) if use_cache else (b, 1), bos_id, dtype=torch.long,
                        device=memory.device)
    stepper = _Stepper(head, memory, mem_mask, bos_id, use_cache, max_steps, one_video=True)
    pickers = word_pickers(head, memory, use_cache, shortlist)
    bans = _bans(banned_ids, eos_id, memory.device)
    if pickers:
        stepper.state['hidden_only'] = True
        banned, banned_eos = banned_masks(head.vocab_size, banned_ids, eos_id, memory.device)
        words_banned = set(int(i) for i in banned_ids or ())  # the same, as host sets
        words_banned_eos = words_banned | {int(eos_id)}
        weight = pickers[0].weight
        misses = [0] * len(pickers)
    for t in range(max_steps):
        if pickers:
            h = stepper(tokens)
            ban, ban_words = (banned_eos, words_banned_eos) if t < min_len \
                else (banned, words_banned)
            nxt = None
            for i, picker in enumerate(pickers):
                # a picker that could not narrow the words down twice (flat
                # distributions) is skipped for the rest of this decode
                if misses[i] < 2:
                    nxt = picker.argmax(h, ban, ban_words)
                    if nxt is not None:
                        break
                    misses[i] += 1
            if nxt is None:
                # the bans as ids (a few columns), not the (V,) mask: masking every
                # element of an (N, V) product cost 7% of a decode at 160 rows
                logits = output_product(h, weight, out=stepper.buffer(h.shape[0]))
                nxt = _constrain(logits, bans[t < min_len], None, 0).argmax(-1)
        else:
            logits = stepper(tokens, reuse_output=True)
            # in place: the logits are this step's own (no copy of an (N, V) tensor)
            logits = _constrain(logits, bans[t < min_len], None, 0)
            nxt = logits.argmax(-1)
        words = nxt.tolist()  # one op for the EOS test and the captions, however many rows
        for row, word in zip(live, words):
            captions[row].append(word)
        if eos_id in words:
            keep = [i for i, w in enumerate(words) if w != eos_id]
            if not keep:
                break
            live = [live[i] for i in keep]
            keep = torch.tensor(keep, device=memory.device)
            nxt = nxt[keep]
            if not use_cache:
                tokens = tokens.index_select(0, keep)
            stepper.reorder(keep)
        tokens = nxt if use_cache else torch.cat([tokens, nxt[:, None]], dim=1)
    steps = max((len(c) for c in captions), default=0)
    return torch.tensor([c + [eos_id] * (steps - len(c)) for c in captions],
                        dtype=torch.long, device=memory.device).view(b, steps)


class _Paths:
    """The words of every beam hypothesis as back-pointers: each step records the row
    each new row continues and the word it adds (Python lists: no step copies the
    histories), and a finished caption's words are read back through them."""

    def __init__(self):
        self.parents, self.words = [], []

    def extend(self, parents, words):
        self.parents.append(parents)
        self.words.append(words)

    def words_of(self, rows):
        """LongTensor ``(len(rows), steps)``: the words of ``rows`` (a LongTensor of
        rows of the current step), BOS excluded."""
        rows = rows.tolist()
        steps = len(self.words)
        out = [[0] * steps for _ in rows]
        for s in range(steps - 1, -1, -1):
            parents, words = self.parents[s], self.words[s]
            for j, r in enumerate(rows):
                out[j][s] = words[r]
                rows[j] = parents[r]
        return torch.tensor(out, dtype=torch.long).view(len(rows), steps)


class _StepTensors:
    """What one beam step writes, made once per shape (``n`` videos x ``width`` beams)
    with the views the step reads: at batch 1 a step is a few dozen tensor ops of a
    few microseconds each, and every fresh tensor or view would add to them.

    Each beam's best words go to ``val``/``idx``; the survivors' scores to ``scores``,
    their source rows and words to ``picked`` (one gather, one ``tolist``). Steps
    alternate between two of these, so a step still reads the scores the previous one
    wrote.
    """

    def __init__(self, n, width, per_beam, k, device):
        rows, cands, keep = n * width, width * per_beam, min(k, width * per_beam)
        self.shape, self.keep = (n, width), keep
        self.val = torch.empty(rows, per_beam, device=device)
        self.kth = self.val[:, -1:]  # each beam's K-th best word
        self.cand_val = self.val.view(n, cands)
        # per (video, candidate): the row it continues and its word, side by side so
        # that one gather picks both for the survivors
        both = torch.empty(2, n, cands, dtype=torch.long, device=device)
        both[0] = torch.arange(0, rows, width, device=device)[:, None] \
            + torch.arange(cands, device=device) // per_beam
        self.both, self.idx = both, both[1].view(rows, per_beam)
        self.scores = torch.empty(n, keep, device=device)
        self.scores_col = self.scores.view(-1, 1)
        self.pos = torch.empty(n, keep, dtype=torch.long, device=device)
        self.pos_both = self.pos[None].expand(2, n, keep)
        self.picked = torch.empty(2, n, keep, dtype=torch.long, device=device)
        self.picked_rows = self.picked.view(2, n * keep)
        self.src, self.word = self.picked_rows[0], self.picked_rows[1]


@_inference
def beam_search(head, memory, mem_mask, bos_id, eos_id, max_steps, beam_size=5,
                length_penalty=1.0, min_len=0, no_repeat_ngram=0, banned_ids=None,
                use_cache=True, return_scores=False):
    """Batched beam search; returns the best caption per video.

    All ``B`` videos x ``K`` beams go through the head as one batch of ``B * K`` rows;
    each step feeds one token per row through the head's cache and ``reorder``
    gathers the surviving hypotheses' cache rows. A beam ends (EOS) when EOS is among
    its own ``K`` most likely next tokens; the ``K`` best non-EOS continuations over
    all beams of a video survive. A video stops once no live beam
    can still beat its best finished caption (bounded with ``max_steps``), and the
    whole search stops when every video has.

    Args:
        beam_size (int): hypotheses kept per video.
        length_penalty (float): exponent ``a`` of the length normaliser ``L ** a``
            (0: raw sum of log-probabilities; 1: mean per token).
        min_len (int): EOS is not allowed before this many tokens.
        no_repeat_ngram (int): if > 0, no n-gram of this size occurs twice.
        banned_ids (iterable, optional): ids never generated.
        return_scores (bool): also return the best scores ``(B,)``.

    Returns:
        LongTensor ``(B, <=max_steps)`` (EOS repeated after EOS) [and scores].
    """
    b, k, device = memory.shape[0], beam_size, memory.device
    stepper = _Stepper(head, memory, mem_mask, bos_id, use_cache, max_steps)
    # one row per video for the first step, then K rows per video
    feed = torch.full((b,), bos_id, dtype=torch.long, device=device)  # each row's last token
    paths = _Paths()
    # the words so far as one tensor, kept only where something reads it every step
    # (n-gram blocking, the reference loop's input)
    tokens = feed[:, None] if no_repeat_ngram or not use_cache else None
    scores = torch.zeros(b, 1, device=device)      # each row's running score, (rows, 1)
    best_scores = torch.full((b,), NEG_INF, device=device)
    best_tokens = torch.full((b, max_steps), eos_id, dtype=torch.long, device=device)
    # videos still searching (indices into the batch) and their best finished scores; a
    # finished video's rows leave the computation, so the cost follows the actual
    # caption lengths
    live = torch.arange(b, device=device)
    live_best = best_scores.clone()
    bans = _bans(banned_ids, eos_id, device)
    # before the last step EOS is scored on its own (it ends a hypothesis), so it is
    # masked with the banned ids (bans[1]) and each beam's top-k holds non-EOS words only
    eos_banned = eos_id in set(int(i) for i in banned_ids or ())
    a = float(length_penalty)
    # length normalisers as 0-d tensors: dividing by a Python number wraps it in a new
    # tensor every time (same float32 result)
    norms = torch.tensor([float(i ** a) for i in range(1, max_steps + 1)],
                         device=device).unbind()
    bound_div = norms[-1]
    width, pair = 1, None
    finished = False  # whether any video has a finished caption yet
    # At batch 1 a step is a few dozen ~5 us tensor ops, so the bookkeeping below is
    # kept to few ops: scores stay in the (rows, 1) layout the additions need, the
    # step's outputs go to tensors made once per shape, EOS leaves the top-k before it
    # is taken, and one tolist per step reads what the host needs.
    for t in range(max_steps):
        length = t + 1
        n = live.numel()
        # Scores are normalised over the whole vocabulary, before the constraints; after
        # that only each beam's few best words are needed, so no (B, K*V) candidate sum
        # or top-k is materialised.
        logits = stepper(feed if use_cache else tokens, reuse_output=True)
        if logits.dtype != torch.float32 or not logits.is_contiguous():
            logits = logits.float().contiguous()
        # in place: a fresh (B*K, V) tensor per step costs page faults at this size
        logp = torch.log_softmax(logits, dim=-1, out=logits)
        hist = tokens[:, 1:] if no_repeat_ngram else None
        if length == max_steps:
            # every hypothesis ends here: with each beam's best word (EOS included,
            # where allowed)
            logp = _constrain(logp, bans[t < min_len], hist, no_repeat_ngram)
            top_val, top_idx = logp.max(-1, keepdim=True)
            ends, end_beam = top_val.add_(scores).view(n, width).max(-1)
            may_end = True
        else:
            if pair is None or pair[0].shape != (n, width):
                per_beam = min(k, logp.shape[-1])
                pair = [_StepTensors(n, width, per_beam, k, device) for _ in range(2)]
            buf = pair[t % 2]
            # a beam may end only if EOS is among its own K best next words (so K=1
            # ends exactly where greedy does; K >= vocabulary ends every beam), i.e. if
            # EOS scores at least the K-th best of its other words. EOS's
            # log-probabilities are read (as host floats) before the mask hides them.
            eos_logp = None if t < min_len or eos_banned else logp.select(1, eos_id).tolist()
            logp = _constrain(logp, bans[1], hist, no_repeat_ngram)
            row_topk(logp, buf.val.shape[1], out=(buf.val, buf.idx))  # K best non-EOS words
            may_end = False
            if eos_logp is not None:
                can = [e >= kth for e, (kth,) in zip(eos_logp, buf.kth.tolist())]
                may_end = True in can
                if may_end:
                    eos_cand = (scores + torch.tensor(eos_logp, device=device)[:, None]) \
                        .masked_fill_(~torch.tensor(can, device=device)[:, None], NEG_INF)
                    ends, end_beam = eos_cand.view(n, width).max(-1)
            # survivors: the K best continuations over all of a video's beams
            buf.val.add_(scores)
            torch.topk(buf.cand_val, buf.keep, dim=-1, out=(buf.scores, buf.pos))
            torch.gather(buf.both, 2, buf.pos_both, out=buf.picked)
            parents, words = buf.picked_rows.tolist()
        if may_end:
            if a:
                ends.div_(norms[t])
            better = ends > live_best
            if better.any():
                finished = True
                rows = better.nonzero().squeeze(1)
                src = rows * width + end_beam[rows]  # video i's beams are rows i*width..
                end_word = top_idx[src] if length == max_steps else \
                    src.new_full((rows.numel(), 1), eos_id)
                vids = live[rows]
                best_tokens[vids, :length] = torch.cat(
                    [paths.words_of(src).to(device), end_word], dim=1)
                best_tokens[vids, length:] = eos_id
                best_scores[vids] = ends[rows]
                live_best = torch.where(better, ends, live_best)
        if length == max_steps:
            break
        new_scores, new_src, feed, scores = buf.scores, buf.src, buf.word, buf.scores_col
        # stop a video when no live beam can beat its best finished caption (a bound
        # above -inf also means the video still has a candidate of finite score). Before
        # any caption has finished there is nothing to beat: a video whose candidates
        # are all -inf can then only end with -inf, i.e. without a caption, the same
        # outcome as stopping it, so the check waits for the first finished caption.
        if finished:
            lead = new_scores[:, 0]
            going = (lead / bound_div if a else lead) > live_best
            if not going.all():
                if not going.any():
                    break
                keep = going.nonzero().squeeze(1)
                live, live_best, new_scores = live[keep], live_best[keep], new_scores[keep]
                picked = buf.picked[:, keep].view(2, -1)
                new_src, feed, scores = picked[0], picked[1], new_scores.view(-1, 1)
                parents, words = picked.tolist()
        stepper.reorder(new_src)
        paths.extend(parents, words)
        if tokens is not None:
            tokens = torch.cat([tokens.index_select(0, new_src), feed[:, None]], dim=1)
        width = new_scores.shape[1]
    width = int((best_tokens != eos_id).sum(1).max().item()) + 1
    out = best_tokens[:, :min(width, max_steps)]
    return (out, best_scores) if return_scores else out
