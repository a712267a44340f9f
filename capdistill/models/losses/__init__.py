from .caption_losses import (CrossEntropyCaptionLoss, LabelSmoothingLoss, label_smoothed_nll,
                             masked_mean, upcast)
from .distill_losses import WordKLLoss
from .divergences import (ForwardKLDivergence, GeneralizedJSDivergence, ReverseKLDivergence,
                          SkewKLDivergence, SkewReverseKLDivergence, TokenDivergence,
                          TotalVariationDistance)
from .feature_losses import (ActionDistillLoss, FeatureCosineLoss, FeatureMSELoss,
                             ObjectDistillLoss, RelationalLoss)
from .sequence_losses import ConceptPredictionLoss, QualityWeightedCaptionLoss, SequenceKDLoss

__all__ = ['CrossEntropyCaptionLoss', 'LabelSmoothingLoss', 'label_smoothed_nll', 'masked_mean',
           'upcast',
           'WordKLLoss', 'ActionDistillLoss', 'FeatureCosineLoss', 'FeatureMSELoss',
           'ObjectDistillLoss', 'RelationalLoss', 'ConceptPredictionLoss',
           'QualityWeightedCaptionLoss', 'SequenceKDLoss', 'TokenDivergence',
           'ForwardKLDivergence', 'ReverseKLDivergence', 'GeneralizedJSDivergence',
           'SkewKLDivergence', 'SkewReverseKLDivergence', 'TotalVariationDistance']
