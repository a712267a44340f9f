from .algorithm import DistillAlgorithm

__all__ = ['DistillAlgorithm']
