# (b) on the capdemo features, the same switches as on real data (object, action, word,
# grade on; concept off): the teacher of sftcap_teacher_grid16_1xb64-12e_capdemo.py
# (transformer + HAM, width 256, 16x16-grid features; train it first) -> a student
# (HAM, width 96) on 8x8-grid features. Wiring and switches:
# ../_base_/models/sftcap_distill.py; smaller models here, so connectors 96 -> 256.
_base_ = ['../_base_/models/sftcap_distill.py',
          '../_base_/datasets/capdemo_grid16-grid8.py', '../_base_/schedules/adam_20e.py',
          '../_base_/default_runtime.py']
model = dict(
    student=dict(
        _delete_=True, type='Captioner', feature_key='feats',
        visual_encoder=dict(type='FeatureProjector', in_dim=192, embed_dim=96, num_frames=16),
        encoder=dict(type='HAM', embed_dim=96, num_actions=8, num_heads=4),
        head=dict(type='PrefixLMHead', embed_dim=96, depth=1, num_heads=4),
        tokenizer={{_base_.tokenizer}},
        caption_loss=dict(type='QualityWeightedCaptionLoss', smoothing=0.1, gamma=1.0),
        max_len={{_base_.max_len}}),
    # the same model as sftcap_teacher_grid16_1xb64-12e_capdemo.py (a test keeps them equal)
    teacher=dict(
        _delete_=True, type='Captioner', feature_key='teacher_feats',
        visual_encoder=dict(type='FeatureProjector', in_dim=768, embed_dim=256, num_frames=16),
        encoder=dict(type='EncoderStack', encoders=[
            dict(type='TransformerEncoder', embed_dim=256, depth=4, num_heads=4),
            dict(type='HAM', embed_dim=256, num_actions=8, num_heads=4)]),
        head=dict(type='PrefixLMHead', embed_dim=256, depth=4, num_heads=4),
        tokenizer={{_base_.tokenizer}},
        caption_loss=dict(type='LabelSmoothingLoss', smoothing=0.1),
        max_len={{_base_.max_len}}),
    teacher_ckpt='work_dirs/sftcap_teacher_grid16_1xb64-12e_capdemo/best',
    connectors=dict(obj=dict(in_dim=96, out_dim=256), act=dict(in_dim=96, out_dim=256)),
    distill_losses=dict(loss_obj_concept=None, loss_act_concept=None))
train_dataloader = dict(dataset=dict(grade='tfidf'))
optim_wrapper = dict(optimizer=dict(lr=5e-4))
train_cfg = dict(max_epochs=12, val_interval=12)
frame_encoder = dict(type='PixelGridEncoder', grid=8)
