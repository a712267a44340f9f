# The demo teacher's architecture on the coarse (8x8 grid) features: the second teacher of
# the two-teacher row (twoteachers_*.py), trained like the grid16 teacher (8 epochs).
_base_ = ['../capdemo/baseline_teacher_grid16_1xb64-8e_capdemo.py']

model = dict(feature_key='feats', visual_encoder=dict(in_dim=192))

# Raw videos -> features for tools/caption_video.py (the encoder the features were made with)
frame_encoder = dict(type='PixelGridEncoder', grid=8)
