from .feature_encoders import FeatureProjector, IdentityEncoder, TransformerEncoder
from .frame_encoders import OpenCLIPVisual, PixelGridEncoder, TimmFrameEncoder
from .temporal_encoders import HAM, EncoderStack, LSTMEncoder, PoolingEncoder
