"""capdemo: a small, procedurally generated video captioning data set for demos and tests.

It is rendered by the project itself (shapes, colours, motions) and never stands in
for MSVD, MSR-VTT or VATEX results.
"""
from .build import HELD_OUT, make_demo_dataset
from .configs import DEFAULT_ROOT, config_for_root

__all__ = ['DEFAULT_ROOT', 'HELD_OUT', 'config_for_root', 'make_demo_dataset']
