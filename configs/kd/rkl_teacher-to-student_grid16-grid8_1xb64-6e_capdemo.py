# Reverse KL per caption token, KL(q_S || p_T) (MiniLLM, Gu et al., ICLR 2024: mode-seeking),
# on the reference captions (supervised KD); MiniLLM's sequence-level policy gradient and
# teacher-mixed sampling are not used (see configs/kd/README.md).
_base_ = ['./_divergence_base_capdemo.py']
model = dict(
    _delete_=True, type='DistillAlgorithm',
    student={{_base_._student}}, teacher={{_base_._teacher}},
    teacher_ckpt={{_base_._teacher_ckpt}}, teacher_cache={{_base_._teacher_cache}},
    distill_losses=dict(loss_word=dict(type='ReverseKLDivergence', tau=1.0, loss_weight=1.0)))
