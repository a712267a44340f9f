# Teacher on the fine (16x16 grid) demo features.
_base_ = ['../_base_/models/prefixlm_teacher.py', '../_base_/datasets/capdemo_grid16-grid8.py',
          '../_base_/schedules/adam_20e.py', '../_base_/default_runtime.py']

model = dict(visual_encoder=dict(in_dim=768), tokenizer={{_base_.tokenizer}},
             max_len={{_base_.max_len}})
optim_wrapper = dict(optimizer=dict(lr=5e-4))
train_cfg = dict(max_epochs=8, val_interval=8)

# Raw videos -> features for tools/caption_video.py (the encoder the features were made with)
frame_encoder = dict(type='PixelGridEncoder', grid=16)
