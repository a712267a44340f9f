from .captioner import Captioner
from .data_preprocessor import CaptionDataPreprocessor
from .decoding import greedy_decode
from .heads import PrefixLMHead

__all__ = ['Captioner', 'CaptionDataPreprocessor', 'greedy_decode', 'PrefixLMHead']
