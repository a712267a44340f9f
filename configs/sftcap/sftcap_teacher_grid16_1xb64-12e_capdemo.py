# The frozen teacher of (b) on capdemo, trained alone on the 16x16-grid features
# (transformer stack + HAM, width 256). Train it before
# sftcap_grid16-to-grid8_1xb64-12e_capdemo.py, which reads work_dirs/<this config>/best.
_base_ = ['../_base_/datasets/capdemo_grid16-grid8.py', '../_base_/schedules/adam_20e.py',
          '../_base_/default_runtime.py']
model = dict(
    type='Captioner', feature_key='teacher_feats',
    visual_encoder=dict(type='FeatureProjector', in_dim=768, embed_dim=256, num_frames=16),
    encoder=dict(type='EncoderStack', encoders=[
        dict(type='TransformerEncoder', embed_dim=256, depth=4, num_heads=4),
        dict(type='HAM', embed_dim=256, num_actions=8, num_heads=4)]),
    head=dict(type='PrefixLMHead', embed_dim=256, depth=4, num_heads=4),
    tokenizer={{_base_.tokenizer}},
    caption_loss=dict(type='LabelSmoothingLoss', smoothing=0.1),
    max_len={{_base_.max_len}})
optim_wrapper = dict(optimizer=dict(lr=5e-4))
train_cfg = dict(max_epochs=12, val_interval=12)
# Raw videos -> features for tools/caption_video.py (the encoder the features were made with)
frame_encoder = dict(type='PixelGridEncoder', grid=16)
