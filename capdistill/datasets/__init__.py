from .annotations import DataError, load_captions, load_split
from .caption_dataset import CaptionDataset
from .tokenizers import ClipBPETokenizer, WordTokenizer
from .transforms import LoadFrameFeatures, PackCaptionInputs

__all__ = ['DataError', 'load_captions', 'load_split', 'CaptionDataset', 'ClipBPETokenizer',
           'WordTokenizer', 'LoadFrameFeatures', 'PackCaptionInputs']
from .caption_dataset import MSRVTTDataset, MSVDDataset, VATEXDataset  # noqa: E402
from .concepts import caption_concepts, tag_caption, tag_words  # noqa: E402
from .grading import consensus_grades, tfidf_grades  # noqa: E402
from .preprocess import load_preprocessed  # noqa: E402

__all__ += ['MSVDDataset', 'MSRVTTDataset', 'VATEXDataset', 'caption_concepts', 'tag_caption',
            'tag_words', 'consensus_grades', 'tfidf_grades', 'load_preprocessed']
