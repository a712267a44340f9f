from .frame_encoders import OpenCLIPVisual, PixelGridEncoder, TimmFrameEncoder
