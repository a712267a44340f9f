from .loading import (LoadFrameFeatures, PackCaptionInputs, check_features, read_feature_file,
                      read_features, read_h5_features, uniform_indices, TextList)

__all__ = ['LoadFrameFeatures', 'PackCaptionInputs', 'read_feature_file', 'uniform_indices',
           'check_features', 'read_features', 'read_h5_features', 'TextList']
