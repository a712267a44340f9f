"""Frame-feature extraction, re-exported for user code and the tools.

The implementation lives in :mod:`capdistill.datasets.extraction`, below the data sets
that build their features with it (``apis`` sits on top of the package; nothing under
``models/`` or ``datasets/`` imports from it).
"""
from capdistill.datasets.extraction import (ENCODER_PRESETS, encoder_from_options,
                                            extract_features, format_summary,
                                            merge_shard_failures, parse_encoder_cfg,
                                            save_npy_atomic, shard_failures_file)

__all__ = ['ENCODER_PRESETS', 'encoder_from_options', 'extract_features', 'format_summary',
           'merge_shard_failures', 'parse_encoder_cfg', 'save_npy_atomic', 'shard_failures_file']
