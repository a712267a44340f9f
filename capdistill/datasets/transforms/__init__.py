from .loading import LoadFrameFeatures, PackCaptionInputs, read_feature_file, uniform_indices

__all__ = ['LoadFrameFeatures', 'PackCaptionInputs', 'read_feature_file', 'uniform_indices']
