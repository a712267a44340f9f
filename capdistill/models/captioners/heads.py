"""Caption heads: visual tokens + previous words -> next-word logits.

Heads expose the same three calls so decoding is head-agnostic:
``forward(memory, mem_mask, tokens)`` for teacher forcing, ``start(memory, mem_mask)``
to build a decoding state and ``step(tokens, state)`` for one new token per call
using an incremental key/value cache.
"""
import os

import torch
import torch.nn.functional as F
from torch import nn

from capdistill.registry import HEADS
from capdistill.utils.requirements import check_transformer_shape
from ..pooling import masked_pool
from .one_video import OneVideoDecoder
from .word_pick import output_product


def load_clip_token_embedding(path):
    """CLIP's ``token_embedding.weight`` ``(49408, W)`` from a local checkpoint file.

    Accepts OpenAI's TorchScript ``.pt`` files and open_clip state dicts (plain or
    under ``state_dict``). Nothing is downloaded: a missing file is an error.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'CLIP checkpoint not found: {path} (needed for the word embedding; put the '
            'file under model_zoo/ as model_zoo/README.md says, or set head.clip_embedding=None).')
    try:
        state = torch.jit.load(path, map_location='cpu').state_dict()
    except RuntimeError:
        state = torch.load(path, map_location='cpu', weights_only=True)
        state = state.get('state_dict', state)
    for key, value in state.items():
        if key.endswith('token_embedding.weight'):
            return value.float()
    raise KeyError(f'{path} has no token_embedding.weight; is it a CLIP checkpoint?')


def init_word_embedding(embedding, path):
    """Copy CLIP's token embedding from ``path`` into ``embedding`` (shapes must agree).

    ``path`` may be ``dict(path=..., rows=[...])``: only those rows, in that order (the
    CLIP ids of a compact vocabulary, see ``CompactTokenizer``).
    """
    rows = None
    if isinstance(path, dict):
        path, rows = path['path'], path.get('rows')
    weight = load_clip_token_embedding(path)
    if rows is not None:
        weight = weight[torch.as_tensor(rows, dtype=torch.long)]
    if weight.shape != embedding.weight.shape:
        raise ValueError(f'CLIP token embedding in {path} is {tuple(weight.shape)} but the head '
                         f'needs {tuple(embedding.weight.shape)}: use ClipBPETokenizer and an '
                         'embed_dim equal to the CLIP text width (512 for ViT-B/32).')
    with torch.no_grad():
        embedding.weight.copy_(weight)


class SelfAttention(nn.Module):
    """Multi-head attention whose keys/values can be extended step by step."""

    def __init__(self, dim, num_heads, dropout):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x, allowed, cache=None):
        """``cache`` (a dict, filled on the first call): the keys and values so far as
        one ``(B, 2, heads, T, head dim)`` tensor under ``'kv'``, so that growing it or
        re-ordering its rows (beam search) is one op per block, not two."""
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads)
        if cache is None:
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head dim)
        else:
            qkv = qkv.permute(0, 2, 3, 1, 4)  # (B, 3, heads, N, head dim)
            q, kv = qkv[:, 0], qkv[:, 1:]
            if 'kv' in cache:
                kv = torch.cat([cache['kv'], kv], dim=3)
            cache['kv'] = kv
            k, v = kv.unbind(1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


def dropped(drop, x):
    """``drop(x)`` in training, ``x`` otherwise: an eval-mode dropout call does nothing
    but costs a module call, ~5% of a batch-1 decoding step."""
    return drop(x) if drop.training else x


class MLP(nn.Sequential):
    """The feed-forward part of a transformer block: Linear, GELU, Dropout, Linear."""

    def __init__(self, dim, mlp_ratio, dropout):
        hidden = int(dim * mlp_ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, dim))

    def forward(self, x):
        fc1, act, drop, fc2 = self
        return fc2(dropped(drop, act(fc1(x))))


class Block(nn.Module):
    """Pre-norm transformer block with a cacheable self-attention."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, dropout=0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, allowed, cache=None):
        x = x + dropped(self.drop, self.attn(self.norm1(x), allowed, cache))
        return x + dropped(self.drop, self.mlp(self.norm2(x)))


class TiedWordHead(nn.Module):
    """Word embedding + positions in, logits out through the same (tied) embedding.

    The part both caption heads share; subclasses add their blocks and the decoding
    calls ``forward``/``start``/``step``/``reorder``.
    """

    def __init__(self, vocab_size, embed_dim, max_len, dropout, clip_embedding):
        super().__init__()
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.word_embed = nn.Embedding(vocab_size, embed_dim)
        self.word_pos = nn.Parameter(torch.zeros(1, max_len, embed_dim))
        nn.init.normal_(self.word_embed.weight, std=0.02)
        nn.init.normal_(self.word_pos, std=0.02)
        if clip_embedding:
            init_word_embedding(self.word_embed, clip_embedding)
        self.norm = nn.LayerNorm(embed_dim)
        self.drop = nn.Dropout(dropout)

    def _words(self, tokens, offset=0):
        return self.word_embed(tokens) + self.word_pos[:, offset:offset + tokens.shape[1]]

    @property
    def output_weight(self):
        """``(V, E)``: logits are ``norm(hidden) @ output_weight.T`` (tied embedding)."""
        return self.word_embed.weight

    def _logits(self, x, out=None):
        """Logits of ``x`` ``(B, L, E)``, or of a decoding step's ``(B, E)`` (into ``out``
        if given)."""
        if x.dim() == 2:
            return output_product(self.norm(x), self.word_embed.weight, out)
        return F.linear(self.norm(x), self.word_embed.weight)

    @staticmethod
    def _reorder_caches(caches, index):
        for cache in caches:
            if 'kv' in cache:
                cache['kv'] = cache['kv'].index_select(0, index)


@HEADS.register_module()
class PrefixLMHead(TiedWordHead):
    """BERT-style decoder over ``[frame tokens; global token; words]``.

    Frame tokens and the global (mean-pooled) token attend to each other; each word
    attends to all of them and to the words before it. The output projection is tied
    to the word embedding.

    Args:
        vocab_size (int): size of the tokenizer's vocabulary.
        embed_dim (int): model width (the visual tokens must have it too).
        depth (int): transformer blocks.
        num_heads (int): attention heads.
        max_len (int): longest caption in tokens, BOS and EOS included.
        clip_embedding (str, optional): local CLIP checkpoint whose token embedding
            initialises the word embedding (as the reference does; ClipBPETokenizer only).
    """

    def __init__(self, vocab_size, embed_dim, depth=2, num_heads=4, max_len=24,
                 mlp_ratio=4.0, dropout=0.1, clip_embedding=None):
        check_transformer_shape('PrefixLMHead', embed_dim, num_heads, depth)
        super().__init__(vocab_size, embed_dim, max_len, dropout, clip_embedding)
        self.type_embed = nn.Parameter(torch.zeros(2, embed_dim))  # visual, word
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, dropout)
                                    for _ in range(depth))

    # -- pieces ----------------------------------------------------------------
    def _prefix(self, memory, mem_mask):
        """``[frame tokens; global token]`` and its key mask (None for ``mem_mask`` None:
        no token is padding)."""
        glob = masked_pool(memory, mem_mask, 'mean', keepdim=True)
        prefix = dropped(self.drop, torch.cat([memory, glob], dim=1) + self.type_embed[0])
        if mem_mask is None:
            return prefix, None
        return prefix, torch.cat([mem_mask, mem_mask.new_ones(mem_mask.shape[0], 1)], dim=1)

    def _words(self, tokens, offset=0):
        return dropped(self.drop, super()._words(tokens, offset) + self.type_embed[1])

    # -- teacher forcing ----------------------------------------------------------
    def forward(self, memory, mem_mask, tokens, return_hidden=False):
        """Logits ``(B, L, V)`` for every position of ``tokens`` ``(B, L)``."""
        prefix, prefix_mask = self._prefix(memory, mem_mask)
        words = self._words(tokens)
        p, n = prefix.shape[1], words.shape[1]
        allowed = torch.zeros(prefix.shape[0], 1, p + n, p + n, dtype=torch.bool,
                              device=memory.device)
        allowed[..., :p] = prefix_mask[:, None, None, :]
        allowed[..., p:, p:] = torch.ones(n, n, dtype=torch.bool, device=memory.device).tril()
        x = torch.cat([prefix, words], dim=1)
        for blk in self.blocks:
            x = blk(x, allowed)
        hidden = x[:, p:]
        logits = self._logits(hidden)
        return (logits, hidden) if return_hidden else logits

    # -- incremental decoding ------------------------------------------------------
    def start(self, memory, mem_mask):
        """A decoding state holding each block's keys/values over the visual prefix."""
        prefix, prefix_mask = self._prefix(memory, mem_mask)
        caches = [dict() for _ in self.blocks]
        allowed = prefix_mask[:, None, None, :]
        x = prefix
        for blk, cache in zip(self.blocks, caches):
            x = blk(x, allowed, cache)
        return dict(caches=caches, key_mask=prefix_mask, length=0)

    def step(self, tokens, state):
        """Logits ``(B, V)`` for the next word after feeding ``tokens`` ``(B,)``.

        If ``state['logits_out']`` holds a ``(B, V)`` tensor, the logits are written
        there (decoding loops reuse one buffer instead of allocating one per step);
        with ``state['hidden_only']`` the normalised hidden state ``(B, E)`` comes
        back instead, to be scored against :attr:`output_weight`. ``state['dense']``
        (set by a decoding loop when no visual token is padding) skips the key mask.
        """
        x = self._words(tokens[:, None], offset=state['length'])
        if state.get('dense'):
            allowed = None
        else:
            state['key_mask'] = torch.cat(
                [state['key_mask'], state['key_mask'].new_ones(x.shape[0], 1)], dim=1)
            allowed = state['key_mask'][:, None, None, :]
        for blk, cache in zip(self.blocks, state['caches']):
            x = blk(x, allowed, cache)
        state['length'] += 1
        if state.get('hidden_only'):  # the decoder scores the words itself
            return self.norm(x[:, -1])
        return self._logits(x[:, -1], out=state.get('logits_out'))

    def one_video_decoder(self, memory, mem_mask, max_steps):
        """``start``/``step`` for one unpadded video in fewer tensor ops
        (:class:`~.one_video.OneVideoDecoder`), or None where it does not apply."""
        return OneVideoDecoder.of(self, memory, mem_mask, max_steps)

    @staticmethod
    def reorder(state, index):
        """Select rows of a decoding state (beam search re-orders hypotheses)."""
        TiedWordHead._reorder_caches(state['caches'], index)
        if not state.get('dense'):  # a dense state's steps read no key mask
            state['key_mask'] = state['key_mask'].index_select(0, index)
        return state


class CrossAttention(nn.Module):
    """Multi-head attention from words to the visual tokens (keys/values computed once)."""

    def __init__(self, dim, num_heads, dropout):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def memory_kv(self, memory):
        b, m, d = memory.shape
        k, v = self.kv(memory).view(b, m, 2, self.num_heads, d // self.num_heads).unbind(2)
        return k.transpose(1, 2), v.transpose(1, 2)

    def forward(self, x, kv, allowed):
        b, n, d = x.shape
        q = self.q(x).view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=allowed,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class DecoderBlock(nn.Module):
    """Pre-norm transformer decoder block: causal self-attention, cross-attention, MLP."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, dropout=0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = SelfAttention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = CrossAttention(dim, num_heads, dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, self_allowed, kv, mem_allowed, cache=None):
        x = x + dropped(self.drop, self.self_attn(self.norm1(x), self_allowed, cache))
        x = x + dropped(self.drop, self.cross_attn(self.norm2(x), kv, mem_allowed))
        return x + dropped(self.drop, self.mlp(self.norm3(x)))


@HEADS.register_module()
class TransformerDecoderHead(TiedWordHead):
    """A plain transformer decoder: words attend causally to words, and to the visual
    tokens through cross-attention. Tied input/output word embeddings.

    Same decoding interface as :class:`PrefixLMHead` (``forward``/``start``/``step``/
    ``reorder``); ``start`` computes every layer's cross-attention keys/values once.

    Args:
        vocab_size (int): size of the tokenizer's vocabulary.
        embed_dim (int): model width (the visual tokens must have it too).
        depth (int): decoder blocks.
        num_heads (int): attention heads.
        max_len (int): longest caption in tokens, BOS and EOS included.
        clip_embedding (str, optional): local CLIP checkpoint for the word embedding.
    """

    def __init__(self, vocab_size, embed_dim, depth=2, num_heads=4, max_len=24,
                 mlp_ratio=4.0, dropout=0.1, clip_embedding=None):
        check_transformer_shape('TransformerDecoderHead', embed_dim, num_heads, depth)
        super().__init__(vocab_size, embed_dim, max_len, dropout, clip_embedding)
        self.blocks = nn.ModuleList(DecoderBlock(embed_dim, num_heads, mlp_ratio, dropout)
                                    for _ in range(depth))

    def _words(self, tokens, offset=0):
        return dropped(self.drop, super()._words(tokens, offset))

    def forward(self, memory, mem_mask, tokens, return_hidden=False):
        """Logits ``(B, L, V)`` for every position of ``tokens`` ``(B, L)``."""
        x = self._words(tokens)
        n = x.shape[1]
        causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        mem_allowed = mem_mask[:, None, None, :]
        for blk in self.blocks:
            x = blk(x, causal, blk.cross_attn.memory_kv(memory), mem_allowed)
        logits = self._logits(x)
        return (logits, x) if return_hidden else logits

    def start(self, memory, mem_mask):
        """A decoding state: cross-attention keys/values per block and an empty cache."""
        return dict(kv=[blk.cross_attn.memory_kv(memory) for blk in self.blocks],
                    caches=[dict() for _ in self.blocks], mem_mask=mem_mask, length=0)

    def step(self, tokens, state):
        """Logits ``(B, V)`` for the next word after feeding ``tokens`` ``(B,)``.

        If ``state['logits_out']`` holds a ``(B, V)`` tensor, the logits are written
        there (decoding loops reuse one buffer instead of allocating one per step);
        with ``state['hidden_only']`` the normalised hidden state ``(B, E)`` comes
        back instead, to be scored against :attr:`output_weight`. ``state['dense']``
        (set by a decoding loop when no visual token is padding) skips the key mask.
        """
        x = self._words(tokens[:, None], offset=state['length'])
        mem_allowed = None if state.get('dense') else state['mem_mask'][:, None, None, :]
        for blk, kv, cache in zip(self.blocks, state['kv'], state['caches']):
            x = blk(x, None, kv, mem_allowed, cache)
        state['length'] += 1
        if state.get('hidden_only'):  # the decoder scores the words itself
            return self.norm(x[:, -1])
        return self._logits(x[:, -1], out=state.get('logits_out'))

    @staticmethod
    def reorder(state, index):
        """Select rows of a decoding state (beam search re-orders hypotheses)."""
        state['kv'] = [(k.index_select(0, index), v.index_select(0, index))
                       for k, v in state['kv']]
        TiedWordHead._reorder_caches(state['caches'], index)
        if not state.get('dense'):  # a dense state's steps read no memory mask
            state['mem_mask'] = state['mem_mask'].index_select(0, index)
        return state
