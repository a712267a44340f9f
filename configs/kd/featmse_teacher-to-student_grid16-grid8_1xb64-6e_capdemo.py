# Feature regression (FitNets): the student's projected frame tokens, through a trained
# linear connector (128 -> 256), regress the teacher's temporal-encoder tokens.
_base_ = ['./_kd_base_capdemo.py']
model = dict(
    _delete_=True, type='DistillAlgorithm',
    student={{_base_._student}}, teacher={{_base_._teacher}},
    teacher_ckpt={{_base_._teacher_ckpt}},
    recorders=dict(s_tok=dict(source='student', module='visual_encoder', output=0),
                   t_tok=dict(source='teacher', module='encoder', output=0)),
    connectors=dict(tok=dict(type='LinearConnector', in_dim=128, out_dim=256)),
    distill_losses=dict(loss_feat=dict(
        type='FeatureMSELoss', loss_weight=1.0,
        inputs=dict(student='tok(s_tok)', teacher='t_tok', mask='data.feats_mask'))))
