# VATEX as released (vatex-official_clip-l14-b32.py), CLIP ViT-B/32 frame features only
# (the shared-weight SFTCap training).
_base_ = ['./vatex-official_clip-l14-b32.py']
feature_dirs = dict(_delete_=True, feats='visual/clip_b32/frame_feature')
_dataset = dict(feature_dirs=feature_dirs)
train_dataloader = dict(dataset=dict(feature_dirs=feature_dirs))
val_dataloader = dict(dataset=dict(feature_dirs=feature_dirs))
test_dataloader = dict(dataset=dict(feature_dirs=feature_dirs))
