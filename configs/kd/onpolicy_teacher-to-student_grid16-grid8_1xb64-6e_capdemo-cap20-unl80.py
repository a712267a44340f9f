# On-policy KD in the 20%-captioned study: the on-policy row
# (onpolicy_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py: lmbda 0.5, generalised JSD
# beta 0.5, tau 1) with the 20%-teacher, on the data of the sequence-KD row of the study
# (seqkd_..._capdemo-cap20-unl80.py): the captioned 20% plus the other 80% as unlabeled
# videos, 5 samples each per epoch, 4200 samples an epoch, 6 epochs = the steps of the 30 of
# the 20% scratch student. The unlabeled videos reach only the on-policy term: their
# student-sampled rows are scored by the teacher; their reference rows are empty and leave
# the caption loss and op_mask (about half of them in a step, at lmbda 0.5).
_base_ = ['./_cap20_base_capdemo.py']
train_dataloader = dict(dataset=dict(unlabeled_ids='splits/capdemo_train-unl80_list.json',
                                     unlabeled_repeat=5))
model = dict(
    _delete_=True, type='DistillAlgorithm',
    student={{_base_._student}}, teacher={{_base_._teacher}},
    teacher_ckpt={{_base_._teacher_ckpt}},
    onpolicy=dict(lmbda=0.5, temperature=1.0, max_len=None, seed=0,
                  off_policy='ground_truth'),
    distill_losses=dict(loss_onpolicy=dict(
        type='GeneralizedJSDivergence', beta=0.5, tau=1.0, loss_weight=1.0,
        inputs=dict(student='op_s_logits', teacher='op_t_logits', mask='op_mask'))))
train_cfg = dict(max_epochs=6, val_interval=6)
default_hooks = dict(checkpoint=dict(interval=6))
