"""Evaluation: caption metrics (pycocoevalcap)."""
from .caption_scorer import (DEFAULT_METRICS, JavaNotFoundError, MeteorError,
                             SpiceModelsMissingError, clear_caches, prestart_meteor,
                             score_captions, shutdown_meteor)

__all__ = [
    'score_captions', 'shutdown_meteor', 'DEFAULT_METRICS', 'JavaNotFoundError',
    'MeteorError', 'SpiceModelsMissingError', 'prestart_meteor', 'clear_caches'
]
from .metrics import CaptionMetric  # noqa: E402

__all__ += ['CaptionMetric']
