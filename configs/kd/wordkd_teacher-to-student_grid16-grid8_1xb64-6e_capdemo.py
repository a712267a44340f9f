# Word-level KD: tau^2 KL(p_T^tau || p_S^tau) on every caption token (Hinton et al., 2015).
_base_ = ['./_kd_base_capdemo.py']
model = dict(
    _delete_=True, type='DistillAlgorithm',
    student={{_base_._student}}, teacher={{_base_._teacher}},
    teacher_ckpt={{_base_._teacher_ckpt}},
    distill_losses=dict(loss_word=dict(type='WordKLLoss', tau=2.0, loss_weight=1.0)))
