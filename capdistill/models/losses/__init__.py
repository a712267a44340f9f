from .caption_losses import CrossEntropyCaptionLoss, LabelSmoothingLoss, masked_mean, upcast
from .distill_losses import WordKLLoss
from .feature_losses import (ActionDistillLoss, FeatureCosineLoss, FeatureMSELoss,
                             ObjectDistillLoss, RelationalLoss)
from .sequence_losses import ConceptPredictionLoss, QualityWeightedCaptionLoss, SequenceKDLoss

__all__ = ['CrossEntropyCaptionLoss', 'LabelSmoothingLoss', 'masked_mean', 'upcast',
           'WordKLLoss', 'ActionDistillLoss', 'FeatureCosineLoss', 'FeatureMSELoss',
           'ObjectDistillLoss', 'RelationalLoss', 'ConceptPredictionLoss',
           'QualityWeightedCaptionLoss', 'SequenceKDLoss']
