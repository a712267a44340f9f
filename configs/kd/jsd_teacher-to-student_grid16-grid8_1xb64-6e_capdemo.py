# Generalised JSD (beta 0.5) per caption token (GKD, Agarwal et al., ICLR 2024) on the
# reference captions only: the supervised half of GKD, without the student's own samples
# (those are the on-policy row, onpolicy_teacher-to-student_...).
_base_ = ['./_divergence_base_capdemo.py']
model = dict(
    _delete_=True, type='DistillAlgorithm',
    student={{_base_._student}}, teacher={{_base_._teacher}},
    teacher_ckpt={{_base_._teacher_ckpt}}, teacher_cache={{_base_._teacher_cache}},
    distill_losses=dict(loss_word=dict(type='GeneralizedJSDivergence', beta=0.5, tau=1.0, loss_weight=1.0)))
