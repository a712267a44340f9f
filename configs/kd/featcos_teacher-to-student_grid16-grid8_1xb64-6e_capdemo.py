# Cosine feature matching on the caption heads' hidden states (one per caption token),
# through a trained linear connector (128 -> 256).
_base_ = ['./_kd_base_capdemo.py']
model = dict(
    _delete_=True, type='DistillAlgorithm',
    student={{_base_._student}}, teacher={{_base_._teacher}},
    teacher_ckpt={{_base_._teacher_ckpt}},
    connectors=dict(hid=dict(type='LinearConnector', in_dim=128, out_dim=256)),
    distill_losses=dict(loss_feat=dict(
        type='FeatureCosineLoss', loss_weight=1.0,
        inputs=dict(student='hid(s_hidden)', teacher='t_hidden', mask='mask'))))
