# Two teachers on different feature sets: the demo teacher on the fine grid16 features and
# the same architecture on the student's own grid8 features. Word-level KD (KL, tau 2) to
# their ensemble: the weighted mixture of their token distributions at temperature 2
# (t_logits.ensemble; with the loss's tau equal to the ensemble temperature the student
# matches exactly the average of the two tempered distributions). Why the ensemble and
# not one term per teacher: see configs/kd/README.md, "Several teachers".
_base_ = ['./_kd_base_capdemo.py']

_teacher_grid8 = dict(
    type='Captioner', feature_key='feats',
    visual_encoder=dict(type='FeatureProjector', in_dim=192, embed_dim=256),
    encoder=dict(type='TransformerEncoder', embed_dim=256, depth=2, num_heads=4),
    head=dict(type='PrefixLMHead', embed_dim=256, depth=2, num_heads=4),
    tokenizer={{_base_.tokenizer}}, max_len={{_base_.max_len}})

model = dict(
    _delete_=True, type='DistillAlgorithm',
    student={{_base_._student}},
    teachers=dict(
        grid16=dict(model={{_base_._teacher}}, ckpt={{_base_._teacher_ckpt}}, weight=1.0),
        grid8=dict(model=_teacher_grid8,
                   ckpt='work_dirs/baseline_teacher_grid8_1xb64-8e_capdemo/epoch_8.pth',
                   weight=1.0)),
    teacher_ensemble=dict(temperature=2.0),
    distill_losses=dict(loss_word=dict(
        type='WordKLLoss', tau=2.0, loss_weight=1.0,
        inputs=dict(student='s_logits', teacher='t_logits.ensemble', mask='mask'))))
