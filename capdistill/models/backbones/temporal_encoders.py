"""Temporal encoders over frame tokens: HAM, LSTM, pooling and a stack of encoders.

Every encoder is ``forward(x (B, N, E), mask (B, N) bool) -> (x, mask)``.
"""
import torch
from torch import nn

from capdistill.registry import BACKBONES
from ..pooling import masked_pool


class _BiLSTM(nn.Module):
    """A bidirectional LSTM over the valid tokens, projected back to the model width."""

    def __init__(self, embed_dim, hidden_dim=None, num_layers=1, bidirectional=True):
        super().__init__()
        hidden_dim = hidden_dim or (embed_dim // 2 if bidirectional else embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers, batch_first=True,
                            bidirectional=bidirectional)
        out = hidden_dim * (2 if bidirectional else 1)
        self.proj = nn.Identity() if out == embed_dim else nn.Linear(out, embed_dim)

    def forward(self, x, mask):
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                   enforce_sorted=False)
        y, _ = self.lstm(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return self.proj(y)


@BACKBONES.register_module()
class HAM(nn.Module):
    """Hierarchical attention module, in the spirit of the SFTCap reference.

    What it computes, for frame tokens ``F`` ``(B, T, E)``:

    1. *frame attention over action tokens*: ``num_actions`` learned action queries
       attend over the valid frames -> action features ``A`` ``(B, K, E)``;
    2. *attention over the attended result*: every frame attends over ``A`` and adds
       the result (residual + LayerNorm) -> object features ``O`` ``(B, T, E)``
       (frames refined by the actions they take part in);
    3. a BiLSTM over ``O`` (valid frames only) -> ``H`` ``(B, T, E)``;
    4. max-pool of ``H`` over valid frames -> a global token ``g`` ``(B, 1, E)``.

    Output tokens: ``[H; g]`` with mask ``[mask; True]``. ``O`` and ``A`` pass through
    the identity modules ``objects`` and ``actions`` so that recorders (forward hooks
    on ``<encoder>.objects``/``<encoder>.actions``) and :meth:`forward_features` see them.

    Args:
        embed_dim (int): model width.
        num_actions (int): learned action queries.
        num_heads (int): attention heads of both attentions.
        dropout (float): attention / output dropout.
    """

    def __init__(self, embed_dim, num_actions=8, num_heads=8, dropout=0.1):
        super().__init__()
        self.action_queries = nn.Parameter(torch.randn(1, num_actions, embed_dim) * 0.02)
        self.frame_attn = nn.MultiheadAttention(embed_dim, num_heads, dropout, batch_first=True)
        self.norm_a = nn.LayerNorm(embed_dim)
        self.action_attn = nn.MultiheadAttention(embed_dim, num_heads, dropout,
                                                 batch_first=True)
        self.norm_o = nn.LayerNorm(embed_dim)
        self.lstm = _BiLSTM(embed_dim)
        self.norm = nn.LayerNorm(embed_dim)
        self.drop = nn.Dropout(dropout)
        self.objects = nn.Identity()
        self.actions = nn.Identity()

    def forward_features(self, x, mask):
        """Dict with ``tokens``/``mask`` (the output) and ``objects``/``actions``."""
        b = x.shape[0]
        queries = self.action_queries.expand(b, -1, -1)
        # a video without any valid frame attends over its (zero) padding instead of
        # nothing: softmax over keys that are all masked is NaN
        ignore = ~mask & mask.any(1, keepdim=True)
        actions, _ = self.frame_attn(queries, x, x, key_padding_mask=ignore,
                                     need_weights=False)
        actions = self.actions(self.norm_a(queries + self.drop(actions)))
        refined, _ = self.action_attn(x, actions, actions, need_weights=False)
        objects = self.objects(self.norm_o(x + self.drop(refined)))
        hidden = self.norm(self.lstm(objects, mask))
        glob = masked_pool(hidden, mask, 'max', keepdim=True)
        tokens = torch.cat([hidden, glob], dim=1)
        out_mask = torch.cat([mask, mask.new_ones(b, 1)], dim=1)
        return dict(tokens=tokens, mask=out_mask, objects=objects, actions=actions,
                    frame_mask=mask)

    def forward(self, x, mask):
        out = self.forward_features(x, mask)
        return out['tokens'], out['mask']


@BACKBONES.register_module()
class LSTMEncoder(nn.Module):
    """(Bi)LSTM over the frame tokens; output keeps the width and the mask."""

    def __init__(self, embed_dim, num_layers=1, bidirectional=True, dropout=0.1):
        super().__init__()
        self.lstm = _BiLSTM(embed_dim, num_layers=num_layers, bidirectional=bidirectional)
        self.norm = nn.LayerNorm(embed_dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask):
        return self.drop(self.norm(self.lstm(x, mask))), mask


@BACKBONES.register_module()
class PoolingEncoder(nn.Module):
    """Mean or max pooling over the valid frame tokens.

    Args:
        mode (str): 'mean' or 'max'.
        keep_tokens (bool): True appends the pooled token to the frame tokens;
            False returns the pooled token alone ``(B, 1, E)``.
    """

    def __init__(self, mode='mean', keep_tokens=False):
        super().__init__()
        if mode not in ('mean', 'max'):
            raise ValueError(f"PoolingEncoder mode must be 'mean' or 'max', got {mode!r}")
        self.mode = mode
        self.keep_tokens = keep_tokens

    def forward(self, x, mask):
        pooled = masked_pool(x, mask, self.mode, keepdim=True)
        ones = mask.new_ones(mask.shape[0], 1)
        if self.keep_tokens:
            return torch.cat([x, pooled], 1), torch.cat([mask, ones], 1)
        return pooled, ones


@BACKBONES.register_module()
class EncoderStack(nn.Module):
    """Encoders applied one after another (e.g. a transformer stack, then HAM).

    Args:
        encoders (list[dict]): encoder configs (``BACKBONES``).
    """

    def __init__(self, encoders):
        super().__init__()
        self.encoders = nn.ModuleList(BACKBONES.build(cfg) for cfg in encoders)

    def forward(self, x, mask):
        for enc in self.encoders:
            x, mask = enc(x, mask)
        return x, mask


__all__ = ['HAM', 'LSTMEncoder', 'PoolingEncoder', 'EncoderStack']
