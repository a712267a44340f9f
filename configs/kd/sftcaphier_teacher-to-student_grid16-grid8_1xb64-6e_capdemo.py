# The SFTCap hierarchy in the kd table: ../_base_/models/sftcap_distill.py (the one SFTCap
# (b) definition) with the kd table's teacher, schedule and data (as ./_kd_base_capdemo.py;
# a test keeps them equal). Switches: object, action, word, concept on; grade off. The
# student gets a HAM temporal encoder (object features per frame, 4 action slots); the
# teacher (transformer encoder, no HAM) offers its encoder tokens to both the object and
# the action term; the dataset adds the teacher caption's nouns/verbs (concepts=...).
_base_ = ['../_base_/models/sftcap_distill.py',
          '../_base_/datasets/capdemo_grid16-grid8.py', '../_base_/schedules/adam_20e.py',
          '../_base_/default_runtime.py']
train_dataloader = dict(dataset=dict(concepts=dict(max_objects=3, max_actions=3)))
model = dict(
    student=dict(
        _delete_=True, type='Captioner', feature_key='feats',
        visual_encoder=dict(type='FeatureProjector', in_dim=192, embed_dim=128, dropout=0.1),
        encoder=dict(type='HAM', embed_dim=128, num_actions=4, num_heads=4),
        head=dict(type='PrefixLMHead', embed_dim=128, depth=1, num_heads=4),
        tokenizer={{_base_.tokenizer}},
        caption_loss=dict(type='LabelSmoothingLoss', smoothing=0.1),  # grade off
        max_len={{_base_.max_len}}),
    teacher=dict(
        _delete_=True, type='Captioner', feature_key='teacher_feats',
        visual_encoder=dict(type='FeatureProjector', in_dim=768, embed_dim=256),
        encoder=dict(type='TransformerEncoder', embed_dim=256, depth=2, num_heads=4),
        head=dict(type='PrefixLMHead', embed_dim=256, depth=2, num_heads=4),
        tokenizer={{_base_.tokenizer}}, max_len={{_base_.max_len}}),
    teacher_ckpt='work_dirs/baseline_teacher_grid16_1xb64-8e_capdemo/epoch_8.pth',
    recorders=dict(t_obj=dict(module='encoder', output=0),
                   t_act=dict(module='encoder', output=0)),
    connectors=dict(obj=dict(in_dim=128, out_dim=256), act=dict(in_dim=128, out_dim=256)),
    distill_losses=dict(
        loss_act=dict(inputs=dict(teacher_mask='data.teacher_feats_mask'))))
optim_wrapper = dict(optimizer=dict(lr=5e-4))
train_cfg = dict(max_epochs=6, val_interval=6)
default_hooks = dict(checkpoint=dict(interval=6, max_keep_ckpts=1, save_best=None))
frame_encoder = dict(type='PixelGridEncoder', grid=8)
