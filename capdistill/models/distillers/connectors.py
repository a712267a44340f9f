"""Connectors: trainable adapters from student tensors to the teacher's shape.

They belong to the student side of distillation (their weights are trained with the
student and live in the algorithm's ``connectors.*`` state), and are dropped at
export: a deployed student never needs them.
"""
from torch import nn

from capdistill.registry import CONNECTORS


@CONNECTORS.register_module()
class IdentityConnector(nn.Module):
    """Passes the tensor through (useful to keep a config's mapping uniform)."""

    def forward(self, x):
        return x


@CONNECTORS.register_module()
class LinearConnector(nn.Module):
    """``y = x W^T + b`` over the last dimension (FitNets-style regressor)."""

    def __init__(self, in_dim, out_dim, bias=True):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim, bias=bias)

    def forward(self, x):
        return self.proj(x)


@CONNECTORS.register_module()
class MLPConnector(nn.Module):
    """Two linear layers with a GELU between them, over the last dimension."""

    def __init__(self, in_dim, out_dim, hidden_dim=None):
        super().__init__()
        hidden_dim = hidden_dim or max(in_dim, out_dim)
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(),
                                 nn.Linear(hidden_dim, out_dim))

    def forward(self, x):
        return self.net(x)
