"""Caption heads: visual tokens + previous words -> next-word logits.

Heads expose the same three calls so decoding is head-agnostic:
``forward(memory, mem_mask, tokens)`` for teacher forcing, ``start(memory, mem_mask)``
to build a decoding state and ``step(tokens, state)`` for one new token per call
using an incremental key/value cache.
"""
import torch
import torch.nn.functional as F
from torch import nn

from capdistill.registry import HEADS


class SelfAttention(nn.Module):
    """Multi-head attention whose keys/values can be extended step by step."""

    def __init__(self, dim, num_heads, dropout):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x, allowed, cache=None):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            if 'k' in cache:
                k = torch.cat([cache['k'], k], dim=2)
                v = torch.cat([cache['v'], v], dim=2)
            cache['k'], cache['v'] = k, v
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block with a cacheable self-attention."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, dropout=0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, allowed, cache=None):
        x = x + self.drop(self.attn(self.norm1(x), allowed, cache))
        return x + self.drop(self.mlp(self.norm2(x)))


@HEADS.register_module()
class PrefixLMHead(nn.Module):
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
    """

    def __init__(self, vocab_size, embed_dim, depth=2, num_heads=4, max_len=24,
                 mlp_ratio=4.0, dropout=0.1):
        super().__init__()
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.word_embed = nn.Embedding(vocab_size, embed_dim)
        self.word_pos = nn.Parameter(torch.zeros(1, max_len, embed_dim))
        self.type_embed = nn.Parameter(torch.zeros(2, embed_dim))  # visual, word
        nn.init.normal_(self.word_embed.weight, std=0.02)
        nn.init.normal_(self.word_pos, std=0.02)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, dropout)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.drop = nn.Dropout(dropout)

    # -- pieces ----------------------------------------------------------------
    def _prefix(self, memory, mem_mask):
        m = mem_mask.unsqueeze(-1).to(memory.dtype)
        glob = (memory * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
        prefix = torch.cat([memory, glob], dim=1) + self.type_embed[0]
        prefix_mask = torch.cat([mem_mask, mem_mask.new_ones(mem_mask.shape[0], 1)], dim=1)
        return self.drop(prefix), prefix_mask

    def _words(self, tokens, offset=0):
        pos = self.word_pos[:, offset:offset + tokens.shape[1]]
        return self.drop(self.word_embed(tokens) + pos + self.type_embed[1])

    def _logits(self, x):
        return F.linear(self.norm(x), self.word_embed.weight)

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
        """Logits ``(B, V)`` for the next word after feeding ``tokens`` ``(B,)``."""
        x = self._words(tokens[:, None], offset=state['length'])
        state['key_mask'] = torch.cat(
            [state['key_mask'], state['key_mask'].new_ones(x.shape[0], 1)], dim=1)
        allowed = state['key_mask'][:, None, None, :]
        for blk, cache in zip(self.blocks, state['caches']):
            x = blk(x, allowed, cache)
        state['length'] += 1
        return self._logits(x[:, -1])

    @staticmethod
    def reorder(state, index):
        """Select rows of a decoding state (beam search re-orders hypotheses)."""
        for cache in state['caches']:
            cache['k'] = cache['k'].index_select(0, index)
            cache['v'] = cache['v'].index_select(0, index)
        state['key_mask'] = state['key_mask'].index_select(0, index)
        return state
