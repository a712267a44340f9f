# Shared part of every configs/kd run: the capdemo student, the demo teacher, a short
# schedule. 6 epochs (not the 12 of configs/capdemo) so that 3 seeds of every loss
# family fit on a 2-core CPU; validation only at the end.
_base_ = ['../capdemo/baseline_student_grid8_1xb64-8e_capdemo.py']

_student = {{_base_.model}}
_teacher = dict(
    type='Captioner', feature_key='teacher_feats',
    visual_encoder=dict(type='FeatureProjector', in_dim=768, embed_dim=256),
    encoder=dict(type='TransformerEncoder', embed_dim=256, depth=2, num_heads=4),
    head=dict(type='PrefixLMHead', embed_dim=256, depth=2, num_heads=4),
    tokenizer={{_base_.tokenizer}}, max_len={{_base_.max_len}})
_teacher_ckpt = 'work_dirs/baseline_teacher_grid16_1xb64-8e_capdemo/epoch_8.pth'

train_cfg = dict(max_epochs=6, val_interval=6)
default_hooks = dict(checkpoint=dict(interval=6, max_keep_ckpts=1, save_best=None))
