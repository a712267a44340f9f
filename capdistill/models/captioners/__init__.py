from .captioner import Captioner
from .data_preprocessor import CaptionDataPreprocessor
from .decoding import greedy_decode
from .heads import PrefixLMHead

__all__ = ['Captioner', 'CaptionDataPreprocessor', 'greedy_decode', 'PrefixLMHead']
from .decoding import beam_search, decode  # noqa: E402
from .heads import TransformerDecoderHead  # noqa: E402
from .sftcap import SFTCap  # noqa: E402

__all__ += ['beam_search', 'decode', 'TransformerDecoderHead', 'SFTCap']
from .sampling import CaptionSampler, sample_decode  # noqa: E402
from .scst import CiderDReward, SelfCriticalCaptioner  # noqa: E402

__all__ += ['CaptionSampler', 'sample_decode', 'CiderDReward', 'SelfCriticalCaptioner']
