from .caption_losses import CrossEntropyCaptionLoss, LabelSmoothingLoss, masked_mean
from .distill_losses import WordKLLoss

__all__ = ['CrossEntropyCaptionLoss', 'LabelSmoothingLoss', 'masked_mean', 'WordKLLoss']
