# On-policy distillation (generalised KD, Agarwal et al., ICLR 2024): in every batch half
# of the rows (lmbda 0.5) get a caption the student samples itself (temperature 1, up to
# the student's max_len words, KV-cached, no gradient through the sampling); the other half
# keep their reference caption. The frozen teacher scores every row teacher-forced and a
# generalised JSD (beta 0.5, tau 1) pulls the student's token distributions towards the
# teacher's on those tokens. The student's own caption loss on the references stays on, as
# in every configs/kd row. What differs from GKD: configs/kd/README.md, "On-policy".
_base_ = ['./_kd_base_capdemo.py']
model = dict(
    _delete_=True, type='DistillAlgorithm',
    student={{_base_._student}}, teacher={{_base_._teacher}},
    teacher_ckpt={{_base_._teacher_ckpt}},
    onpolicy=dict(lmbda=0.5, temperature=1.0, max_len=None, seed=0,
                  off_policy='ground_truth'),
    distill_losses=dict(loss_onpolicy=dict(
        type='GeneralizedJSDivergence', beta=0.5, tau=1.0, loss_weight=1.0,
        inputs=dict(student='op_s_logits', teacher='op_t_logits', mask='op_mask'))))
