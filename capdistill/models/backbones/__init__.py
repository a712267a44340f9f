from .feature_encoders import FeatureProjector, IdentityEncoder, TransformerEncoder
from .frame_encoders import OpenCLIPVisual, PixelGridEncoder, TimmFrameEncoder
