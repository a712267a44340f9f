"""Encoders over precomputed frame features: ``(B, T, D)`` + mask -> tokens + mask."""
import torch
from torch import nn

from capdistill.registry import BACKBONES
from capdistill.utils.requirements import ModelConfigError, check_transformer_shape


def too_many_frames(owner, limit, got):
    """The message for a video of more frames than ``owner`` has positions for."""
    return (f'{owner} has frame positions for {limit} frames, got {got}; sample at most '
            f'{limit} frames per video (num_frames of LoadFrameFeatures, --num-frames) or '
            'raise its num_frames.')


@BACKBONES.register_module()
class FeatureProjector(nn.Module):
    """Project frame features to the model width and add learned frame positions."""

    def __init__(self, in_dim, embed_dim, num_frames=32, dropout=0.1):
        super().__init__()
        self.in_dim, self.embed_dim = in_dim, embed_dim
        self.proj = nn.Linear(in_dim, embed_dim)
        self.norm = nn.LayerNorm(embed_dim)
        self.pos = nn.Parameter(torch.zeros(1, num_frames, embed_dim))
        nn.init.normal_(self.pos, std=0.02)
        self.drop = nn.Dropout(dropout)

    @property
    def max_frames(self):
        """Frames per video it has positions for."""
        return self.pos.shape[1]

    def forward(self, feats, mask):
        if feats.shape[-1] != self.in_dim:
            raise ModelConfigError(f'FeatureProjector expects {self.in_dim}-dim features, got '
                                   f'{feats.shape[-1]}; set in_dim to match the feature files.')
        if feats.shape[1] > self.max_frames:
            raise ModelConfigError(too_many_frames('FeatureProjector', self.max_frames,
                                                   feats.shape[1]))
        x = self.norm(self.proj(feats)) + self.pos[:, :feats.shape[1]]
        return (self.drop(x) if self.training else x), mask


@BACKBONES.register_module()
class TransformerEncoder(nn.Module):
    """A stack of pre-norm transformer encoder layers over the frame tokens."""

    def __init__(self, embed_dim, depth=2, num_heads=4, mlp_ratio=4.0, dropout=0.1):
        check_transformer_shape('TransformerEncoder', embed_dim, num_heads, depth)
        super().__init__()
        self.embed_dim = embed_dim
        layer = nn.TransformerEncoderLayer(embed_dim, num_heads, int(embed_dim * mlp_ratio),
                                           dropout, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x, mask):
        return self.norm(self.layers(x, src_key_padding_mask=~mask)), mask


@BACKBONES.register_module()
class IdentityEncoder(nn.Module):
    """No temporal encoder: the frame tokens go straight to the caption head."""

    def forward(self, x, mask):
        return x, mask
