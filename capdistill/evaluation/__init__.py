"""Evaluation: caption metrics (pycocoevalcap)."""
from .caption_scorer import (DEFAULT_METRICS, JavaNotFoundError, MeteorError,
                             SpiceModelsMissingError, score_captions, shutdown_meteor)

__all__ = [
    'score_captions', 'shutdown_meteor', 'DEFAULT_METRICS', 'JavaNotFoundError',
    'MeteorError', 'SpiceModelsMissingError'
]
from .metrics import CaptionMetric  # noqa: E402

__all__ += ['CaptionMetric']
