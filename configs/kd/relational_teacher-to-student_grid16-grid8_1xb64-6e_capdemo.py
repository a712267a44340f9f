# Similarity-preserving KD (Tung & Mori, 2019): the batch's video-to-video similarity
# matrix of the student's pooled frame tokens matches the teacher's. No connector.
_base_ = ['./_kd_base_capdemo.py']
model = dict(
    _delete_=True, type='DistillAlgorithm',
    student={{_base_._student}}, teacher={{_base_._teacher}},
    teacher_ckpt={{_base_._teacher_ckpt}},
    recorders=dict(s_tok=dict(source='student', module='visual_encoder', output=0),
                   t_tok=dict(source='teacher', module='encoder', output=0)),
    distill_losses=dict(loss_rel=dict(
        type='RelationalLoss', mode='similarity', loss_weight=10.0,
        inputs=dict(student='s_tok', teacher='t_tok', mask='data.feats_mask',
                    teacher_mask='data.teacher_feats_mask'))))
