"""A :class:`~.heads.PrefixLMHead` decoding one video, with as few tensor ops as it can.

One video at a time is the deployment case, and there a cached step is some fifty tensor
ops on vectors of a few hundred floats: their fixed costs (module calls, views, growing
the key/value cache with ``cat``) outweigh their arithmetic. :class:`OneVideoDecoder`
computes what the head's ``start``/``step`` compute, for one unpadded video outside
training, as a short fixed sequence of functional ops:

* queries, keys and values are written in place by one ``addmm`` into one buffer per
  block, sized for the longest caption and made once per thread, with the views every
  step length needs made with it (no slices, no growing cache);
* a step attends with one query without transposes, and runs the GELU through
  PyTorch's own kernel (oneDNN's set-up costs more than the arithmetic on one row);
* the prefix skips the last block's attention and MLP (only that block's keys and values
  are ever read).

The results match the head's own to float rounding (tests compare both, and the tokens
with the reference loop's). Greedy decoding uses it by itself (``decoding._Stepper``).
"""
import threading
import weakref

import torch
import torch.nn.functional as F

from .word_pick import output_product

_PER_HEAD = weakref.WeakKeyDictionary()  # head -> {'weights': _Weights, (thread, ...): _Buffers}


class _Buffers:
    """Each block's queries/keys/values ``(prefix + steps, 3 E)``, written by one product
    per step, and the views a step reads: row ``n``, its queries per head, and the keys
    and values of the first ``n`` positions per head."""

    def __init__(self, head, prefix_len, max_steps, like):
        dim = head.word_embed.embedding_dim
        total = prefix_len + max_steps
        self.qkv, self.rows, self.queries, self.keys, self.values = [], [], [], [], []
        self.prefix_queries = []
        for blk in head.blocks:
            heads = blk.attn.num_heads
            qkv = like.new_empty(total, 3 * dim)
            per_head = qkv.view(total, 3, heads, dim // heads).permute(1, 2, 0, 3)
            self.qkv.append(qkv)
            self.rows.append([qkv[n:n + 1] for n in range(total)])
            self.queries.append([per_head[0, None, :, n:n + 1] for n in range(total)])
            self.prefix_queries.append(per_head[0, None, :, :prefix_len])
            self.keys.append([per_head[1, None, :, :n] for n in range(total + 1)])
            self.values.append([per_head[2, None, :, :n] for n in range(total + 1)])


_GELU_SWITCH = threading.Lock()


def _gelu(x):
    """``F.gelu`` through PyTorch's own kernel: on a few rows oneDNN's (which ``F.gelu``
    takes on the CPU when it can) spends ~10 us setting up, 5-10x the arithmetic. The
    switch is process-wide but only for this op, and one decoder at a time flips it (so
    concurrent decodes all take PyTorch's kernel and never turn it back on while another
    one runs); both kernels compute the exact GELU (they differ by float rounding)."""
    if x.device.type != 'cpu':
        return F.gelu(x)
    with _GELU_SWITCH:
        if not torch.backends.mkldnn.enabled:  # switched off by the user
            return F.gelu(x)
        torch.backends.mkldnn.enabled = False
        try:
            return F.gelu(x)
        finally:
            torch.backends.mkldnn.enabled = True


# ``torch.layer_norm`` is what ``F.layer_norm`` calls after reading a backend flag (~1 us
# a call, three calls a step); linear layers are their ``addmm`` with the weight stored
# transposed, as ``F.linear`` calls it.
_layer_norm = torch.layer_norm


class _Block:
    """One block: its weights as the functional ops take them (``(bias, weight.T)``
    pairs and LayerNorm arguments, views of the parameters) and its computation, written
    out op by op (at batch 1 a Python call per op is a measurable share of the step)."""

    def __init__(self, blk):
        dim = blk.attn.out.in_features
        qkv, attn, mlp = blk.attn.qkv, blk.attn, blk.mlp
        self.norm1 = (blk.norm1.weight, blk.norm1.bias, blk.norm1.eps)
        self.norm2 = (blk.norm2.weight, blk.norm2.bias, blk.norm2.eps)
        self.qkv = (qkv.bias, qkv.weight.t())
        self.kv = (qkv.bias[dim:], qkv.weight[dim:].t())
        self.out = (attn.out.bias, attn.out.weight.t())
        self.fc1 = (mlp[0].bias, mlp[0].weight.t())
        self.fc2 = (mlp[3].bias, mlp[3].weight.t())

    def __call__(self, x, qkv, queries, keys, values, last=False):
        """The block on ``x`` ``(N, E)`` (the prefix, or one new word): its queries/keys/
        values into ``qkv`` ``(N, 3E)``, the ``queries`` (per head, views of ``qkv``) over
        ``keys``/``values`` (the positions so far, these included), and its output (None
        for the ``last`` block of the prefix: nothing reads it)."""
        n, dim = x.shape
        h = _layer_norm(x, x.shape[-1:], *self.norm1)
        if last:  # only the keys/values are ever read
            torch.addmm(self.kv[0], h, self.kv[1], out=qkv[:, dim:])
            return None
        torch.addmm(self.qkv[0], h, self.qkv[1], out=qkv)
        y = F.scaled_dot_product_attention(queries, keys, values)
        # one query: heads-first is the same memory, no transposes
        y = y.view(1, dim) if n == 1 else y.transpose(1, 2).reshape(n, dim)
        x = x + torch.addmm(self.out[0], y, self.out[1])
        h = _layer_norm(x, x.shape[-1:], *self.norm2)
        return x + torch.addmm(self.fc2[0], _gelu(torch.addmm(self.fc1[0], h, self.fc1[1])),
                               self.fc2[1])


class _Weights:
    """The head's weights as the decoder reads them, made once and again whenever a
    parameter changes (in place, its storage, or the parameter itself). The key holds
    the parameters' ids while the views keep them alive, so an id is not reused."""

    def __init__(self, head):
        self.key = self.version(head)
        self.blocks = [_Block(blk) for blk in head.blocks]
        self.final_norm = (head.norm.weight, head.norm.bias, head.norm.eps)
        self.embedding = head.word_embed.weight
        # both added to every word; a view per position, so that a step slices nothing
        self.positions = (head.word_pos[0] + head.type_embed[1]).split(1)

    @staticmethod
    def version(head):
        # the module tree walked by hand: ``head.parameters()`` costs 3x as much, and
        # this runs once per decode
        stack, params = [head], []
        while stack:
            module = stack.pop()
            params.extend(module._parameters.values())
            stack.extend(module._modules.values())
        return [(id(p), p.data_ptr(), p._version) for p in params if p is not None]

    @classmethod
    def of(cls, head, cached):
        if cached is None or cls.version(head) != cached.key:
            return cls(head)
        return cached


class OneVideoDecoder:
    """``start``/``step`` of a PrefixLMHead for one unpadded video (see the module doc).

    Use :meth:`of`; ``step`` takes and returns what ``head.step`` does, at batch 1.
    """

    def __init__(self, weights, buffers, prefix_len):
        self.weights, self.buffers, self.prefix_len = weights, buffers, prefix_len
        self.length = 0

    @classmethod
    def of(cls, head, memory, mem_mask, max_steps):
        """A decoder for ``memory`` ``(1, M, E)``, or None where only the head's own
        ``start``/``step`` apply (padding, training, several videos, autocast, not
        float32)."""
        if (memory.shape[0] != 1 or head.training or memory.dtype != torch.float32
                or head.word_embed.weight.dtype != torch.float32
                or torch.is_autocast_enabled(memory.device.type) or not bool(mem_mask.all())):
            return None
        prefix_len = memory.shape[1] + 1  # the frame tokens and the global token
        cached = _PER_HEAD.setdefault(head, {})
        weights = cached['weights'] = _Weights.of(head, cached.get('weights'))
        key = (threading.get_ident(), prefix_len, max_steps, memory.device)
        if key not in cached:
            if len(cached) > 16:
                cached.clear()
                cached['weights'] = weights
            cached[key] = _Buffers(head, prefix_len, max_steps, memory)
        decoder = cls(weights, cached[key], prefix_len)
        decoder.start(head._prefix(memory, None)[0][0])
        return decoder

    def start(self, prefix):
        """Every block's keys/values over the visual prefix ``(P, E)``."""
        buf, blocks = self.buffers, self.weights.blocks
        p, last = self.prefix_len, len(blocks) - 1
        for i, blk in enumerate(blocks):
            prefix = blk(prefix, buf.qkv[i][:p], buf.prefix_queries[i], buf.keys[i][p],
                         buf.values[i][p], i == last)

    def step(self, tokens, state):
        """``head.step(tokens, state)`` for one video: normalised hidden ``(1, E)`` with
        ``state['hidden_only']``, else logits ``(1, V)`` (into ``state['logits_out']``
        if given)."""
        t = self.length
        n = self.prefix_len + t  # this word's position among the keys
        w, buf = self.weights, self.buffers
        x = torch.index_select(w.embedding, 0, tokens).add_(w.positions[t])
        for i, blk in enumerate(w.blocks):
            x = blk(x, buf.rows[i][n], buf.queries[i][n], buf.keys[i][n + 1],
                    buf.values[i][n + 1])
        self.length = t + 1
        h = _layer_norm(x, x.shape[-1:], *w.final_norm)
        if state.get('hidden_only'):
            return h
        return output_product(h, w.embedding, state.get('logits_out'))
