# (b) on the capdemo features: a teacher (transformer + HAM, width 256) on 16x16-grid
# features -> a student (HAM, width 96) on 8x8-grid features, with object-, action- and
# word-level distillation.
_base_ = ['../_base_/models/sftcap_teacher_clip-l14.py',
          '../_base_/models/sftcap_student_clip-b32.py',
          '../_base_/datasets/capdemo_grid16-grid8.py', '../_base_/schedules/adam_20e.py',
          '../_base_/default_runtime.py']
_teacher = dict(
    type='Captioner', feature_key='teacher_feats',
    visual_encoder=dict(type='FeatureProjector', in_dim=768, embed_dim=256, num_frames=16),
    encoder=dict(type='EncoderStack', encoders=[
        dict(type='TransformerEncoder', embed_dim=256, depth=4, num_heads=4),
        dict(type='HAM', embed_dim=256, num_actions=8, num_heads=4)]),
    head=dict(type='PrefixLMHead', embed_dim=256, depth=4, num_heads=4),
    tokenizer={{_base_.tokenizer}}, max_len={{_base_.max_len}})
_student = dict(
    type='Captioner', feature_key='feats',
    visual_encoder=dict(type='FeatureProjector', in_dim=192, embed_dim=96, num_frames=16),
    encoder=dict(type='HAM', embed_dim=96, num_actions=8, num_heads=4),
    head=dict(type='PrefixLMHead', embed_dim=96, depth=1, num_heads=4),
    tokenizer={{_base_.tokenizer}}, max_len={{_base_.max_len}})
model = dict(
    _delete_=True,
    type='DistillAlgorithm', student=_student, teacher=_teacher,
    teacher_ckpt=None, student_loss_weight=1.0,
    # object level: the student HAM's per-frame object features regress the teacher HAM's;
    # action level: their pooled action slots; word level: KL on the next-word distributions
    recorders=dict(s_obj=dict(source='student', module='encoder.objects'),
                   s_act=dict(source='student', module='encoder.actions'),
                   t_obj=dict(source='teacher', module='encoder.encoders.1.objects'),
                   t_act=dict(source='teacher', module='encoder.encoders.1.actions')),
    connectors=dict(obj=dict(type='LinearConnector', in_dim=96, out_dim=256),
                    act=dict(type='LinearConnector', in_dim=96, out_dim=256)),
    distill_losses=dict(
        loss_word=dict(type='WordKLLoss', tau=2.0, loss_weight=1.0),
        loss_obj=dict(type='ObjectDistillLoss', loss_weight=0.5,
                      inputs=dict(student='obj(s_obj)', teacher='t_obj',
                                  mask='data.feats_mask')),
        loss_act=dict(type='ActionDistillLoss', loss_weight=0.5,
                      inputs=dict(student='act(s_act)', teacher='t_act'))))
optim_wrapper = dict(optimizer=dict(lr=5e-4))
train_cfg = dict(max_epochs=12, val_interval=12)
