"""Helpers shared across capdistill. The checkpoint helpers are imported on first use, so
that the command-line helpers (:mod:`capdistill.utils.cli`) load without torch."""
import importlib

__all__ = ['CheckpointError', 'load_full_checkpoint', 'load_matching_state',
           'load_student_checkpoint', 'resolve_checkpoint', 'state_dict_of',
           'strip_student_prefix', 'trust_directory']


def __getattr__(name):
    if name in __all__:
        return getattr(importlib.import_module('.checkpoint', __name__), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
