"""capdemo: a small, procedurally generated video captioning data set for demos and tests.

It is rendered by the project itself (shapes, colours, motions) and never stands in
for MSVD, MSR-VTT or VATEX results.
"""
from .build import HELD_OUT, make_demo_dataset

__all__ = ['HELD_OUT', 'make_demo_dataset']
