"""Seeded caption sampling, for on-policy distillation and self-critical training.

:func:`sample_decode` draws one caption per row from ``softmax(logits / temperature)``,
one token per step through the head's key/value cache (``start``/``step``, the same
interface the greedy and beam decoders use). It runs under ``no_grad``: a loss that
needs the student's log-probabilities re-scores the sampled tokens teacher-forced
(one parallel pass with gradients, :func:`teacher_forcing_tokens`), which keeps no
graph over the sampling loop.

Randomness comes only from a ``torch.Generator`` on the CPU: each step draws one
uniform number per row and picks the token by inverse CDF (``searchsorted`` on the
cumulative probabilities). The draws are then the same on every device, and a run
that reseeds its generator from ``(seed, step, rank)`` (:class:`CaptionSampler`)
samples the same captions after a kill and resume.
"""
import torch

__all__ = ['sample_decode', 'teacher_forcing_tokens', 'repeat_inputs', 'CaptionSampler']


def _pick(probs, generator):
    """One index per row of ``probs`` ``(N, V)`` by inverse CDF with CPU uniforms."""
    u = torch.rand(probs.shape[0], 1, generator=generator, dtype=torch.float64)
    cdf = probs.double().cumsum(-1)
    # u * total < total, and a zero-probability word never has cdf > x before a
    # positive one does, so the pick always has positive probability
    x = u.to(cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, x, right=True).squeeze(1).clamp_(max=probs.shape[1] - 1)


@torch.no_grad()
def sample_decode(head, memory, mem_mask, bos_id, eos_id, max_steps, temperature=1.0,
                  generator=None, banned_ids=None, return_logprobs=False):
    """Sample one caption per row of ``memory`` through the head's key/value cache.

    Args:
        head: a caption head with ``start``/``step`` (e.g. :class:`PrefixLMHead`).
        memory, mem_mask: visual tokens ``(N, M, E)`` and their mask ``(N, M)``.
        max_steps (int): most tokens generated per caption, EOS included.
        temperature (float): > 0; logits are divided by it before the softmax.
        generator (torch.Generator, optional): CPU generator for the draws (the
            global CPU generator if None).
        banned_ids (iterable, optional): ids never sampled (e.g. PAD, BOS).
        return_logprobs (bool): also return each sampled token's log-probability
            under the temperature-scaled distribution ``(N, T)`` (0 after EOS).

    Returns:
        LongTensor ``(N, <=max_steps)``; after EOS, EOS repeats [and log-probs].
    """
    if not temperature > 0:
        raise ValueError(f'temperature must be > 0, got {temperature!r}.')
    if generator is not None and generator.device.type != 'cpu':
        raise ValueError('sample_decode needs a CPU torch.Generator (its draws are moved '
                         'to the model device, so every device samples alike).')
    n, device = memory.shape[0], memory.device
    state = head.start(memory, mem_mask)
    last = torch.full((n,), bos_id, dtype=torch.long, device=device)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    out, logps = [], []
    banned = sorted(set(banned_ids or ()))
    for _ in range(max_steps):
        logits = head.step(last, state).float() / temperature
        if banned:
            logits[:, banned] = float('-inf')
        logp = torch.log_softmax(logits, dim=-1)
        nxt = _pick(logp.exp(), generator).masked_fill(finished, eos_id)
        if return_logprobs:
            chosen = logp.gather(1, nxt[:, None]).squeeze(1)
            logps.append(chosen.masked_fill(finished, 0.0))
        out.append(nxt)
        finished |= nxt == eos_id
        last = nxt
        if finished.all():
            break
    tokens = torch.stack(out, dim=1)
    return (tokens, torch.stack(logps, dim=1)) if return_logprobs else tokens


def teacher_forcing_tokens(ids, bos_id, eos_id, pad_id):
    """Generated ids ``(N, T)`` -> ``(tokens (N, T+1), mask (N, T))`` for re-scoring.

    ``tokens`` is ``[BOS] ids`` with everything after the first EOS set to ``pad_id``,
    so ``Captioner.caption_logits(inputs, tokens)`` predicts ``tokens[:, 1:]``;
    ``mask`` is True on the caption's words and its EOS.
    """
    after_eos = (ids == eos_id).long().cumsum(1) - (ids == eos_id).long() > 0
    body = ids.masked_fill(after_eos, pad_id)
    bos = body.new_full((ids.shape[0], 1), bos_id)
    return torch.cat([bos, body], dim=1), ~after_eos


def repeat_inputs(inputs, times):
    """Each tensor of a batch's ``inputs`` dict repeated ``times`` along dim 0, row-wise."""
    if times == 1:
        return inputs
    return {k: v.repeat_interleave(times, dim=0) if torch.is_tensor(v) else v
            for k, v in inputs.items()}


class CaptionSampler:
    """How a captioner samples its own captions: temperature, length, samples per
    video and the seed.

    ``generator(step, rank)`` gives a CPU generator seeded from ``(seed, step, rank)``;
    a caller that counts its steps in its checkpoint (as :class:`SelfCriticalCaptioner`
    does) therefore draws the same captions after a resume, and DDP ranks draw
    different ones.

    Args:
        temperature (float): > 0 (1: the model's own distribution).
        max_len (int, optional): most words per caption (default: the captioner's
            ``max_len``; may not exceed it).
        num_samples (int): captions drawn per video.
        seed (int): base seed.
        ban_special (bool): never sample PAD or BOS.
    """

    def __init__(self, temperature=1.0, max_len=None, num_samples=1, seed=0,
                 ban_special=True):
        if not temperature > 0:
            raise ValueError(f'sampler temperature must be > 0, got {temperature!r}.')
        if int(num_samples) < 1:
            raise ValueError(f'sampler num_samples must be >= 1, got {num_samples!r}.')
        if max_len is not None and int(max_len) < 1:
            raise ValueError(f'sampler max_len must be >= 1, got {max_len!r}.')
        self.temperature = float(temperature)
        self.max_len = None if max_len is None else int(max_len)
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.ban_special = ban_special

    def check(self, captioner):
        """Refuse, at build time, a ``max_len`` the captioner's head cannot hold."""
        if self.max_len is not None and self.max_len > captioner.max_len:
            raise ValueError(f'sampler max_len={self.max_len} exceeds the captioner\'s '
                             f'max_len={captioner.max_len} (its head has no positions for '
                             'longer captions); lower sampler.max_len.')

    def generator(self, step=0, rank=0):
        """A CPU generator seeded from ``(seed, step, rank)``."""
        mixed = (self.seed * 1_000_003 + int(step)) * 1_009 + int(rank)
        return torch.Generator().manual_seed(mixed % (2 ** 63))

    def __call__(self, captioner, inputs, generator=None, return_logprobs=False):
        """Sample ``num_samples`` captions per video of a batch.

        Returns ``dict(ids, tokens, mask, inputs)``: sampled ids ``(B*n, T)`` (rows of
        one video adjacent), their teacher-forcing ``tokens`` ``(B*n, T+1)`` and
        ``mask`` ``(B*n, T)`` (see :func:`teacher_forcing_tokens`), the batch inputs
        repeated to match (and ``logprobs`` if asked).
        """
        tok = captioner.tokenizer
        banned = None
        if self.ban_special:
            banned = sorted({tok.pad_id, tok.bos_id} - {tok.eos_id})
        max_len = self.max_len or captioner.max_len
        inputs = repeat_inputs(inputs, self.num_samples)
        with torch.no_grad():
            memory, mask = captioner.encode(inputs)
        res = sample_decode(captioner.head, memory, mask, tok.bos_id, tok.eos_id, max_len + 1,
                            temperature=self.temperature, generator=generator,
                            banned_ids=banned, return_logprobs=return_logprobs)
        ids, logprobs = res if return_logprobs else (res, None)
        tokens, tmask = teacher_forcing_tokens(ids, tok.bos_id, tok.eos_id, tok.pad_id)
        out = dict(ids=ids, tokens=tokens, mask=tmask, inputs=inputs)
        if return_logprobs:
            out['logprobs'] = logprobs
        return out
