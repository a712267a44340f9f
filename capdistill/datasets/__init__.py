from .annotations import DataError, load_captions, load_split
from .caption_dataset import CaptionDataset
from .tokenizers import ClipBPETokenizer, WordTokenizer
from .transforms import LoadFrameFeatures, PackCaptionInputs

__all__ = ['DataError', 'load_captions', 'load_split', 'CaptionDataset', 'ClipBPETokenizer',
           'WordTokenizer', 'LoadFrameFeatures', 'PackCaptionInputs']
