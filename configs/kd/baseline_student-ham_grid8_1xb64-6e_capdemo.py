# The scratch baseline of the SFTCap hierarchy row: the same HAM student (object features
# per frame, 4 action slots, 1-block head), data and 6-epoch schedule as
# ./sftcaphier_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py, trained alone (no
# teacher, no distillation terms), so the hierarchy's paired gain is credited to
# distillation only. tests/test_kd_table.py keeps the two students equal.
_base_ = ['./sftcaphier_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py']
model = dict(
    _delete_=True, type='Captioner', feature_key='feats',
    visual_encoder=dict(type='FeatureProjector', in_dim=192, embed_dim=128, dropout=0.1),
    encoder=dict(type='HAM', embed_dim=128, num_actions=4, num_heads=4),
    head=dict(type='PrefixLMHead', embed_dim=128, depth=1, num_heads=4),
    tokenizer={{_base_.tokenizer}},
    caption_loss=dict(type='LabelSmoothingLoss', smoothing=0.1),
    max_len={{_base_.max_len}})
# the noun/verb concepts feed only the hierarchy's distillation terms
train_dataloader = dict(dataset=dict(concepts=None))
