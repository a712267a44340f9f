# Word-level KD: the student learns from the frozen teacher's next-word distributions.
_base_ = ['./baseline_student_grid8_1xb64-8e_capdemo.py']

_teacher = dict(
    type='Captioner', feature_key='teacher_feats',
    visual_encoder=dict(type='FeatureProjector', in_dim=768, embed_dim=256),
    encoder=dict(type='TransformerEncoder', embed_dim=256, depth=2, num_heads=4),
    head=dict(type='PrefixLMHead', embed_dim=256, depth=2, num_heads=4),
    tokenizer={{_base_.tokenizer}}, max_len={{_base_.max_len}})

model = dict(
    _delete_=True,
    type='DistillAlgorithm',
    student={{_base_.model}},
    teacher=_teacher,
    teacher_ckpt='work_dirs/baseline_teacher_grid16_1xb64-8e_capdemo/epoch_8.pth',
    student_loss_weight=1.0,
    distill_losses=dict(loss_word=dict(type='WordKLLoss', tau=2.0, loss_weight=1.0)))
