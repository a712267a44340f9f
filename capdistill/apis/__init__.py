from .captioning import (CaptionInputError, build_frame_encoder, caption_video,
                         init_video_captioner)
from .inference import deployed_model, init_captioner
from .onnx_runner import OnnxCaptioner, init_onnx_captioner

__all__ = ['deployed_model', 'init_captioner', 'caption_video', 'init_video_captioner',
           'build_frame_encoder', 'CaptionInputError', 'OnnxCaptioner', 'init_onnx_captioner']
