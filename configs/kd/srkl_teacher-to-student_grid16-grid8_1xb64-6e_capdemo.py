# Skew reverse KL per caption token, KL(q_S || 0.9 p_T + 0.1 q_S) (DistiLLM, Ko et al.,
# ICML 2024, alpha 0.1), on the reference captions.
_base_ = ['./_divergence_base_capdemo.py']
model = dict(
    _delete_=True, type='DistillAlgorithm',
    student={{_base_._student}}, teacher={{_base_._teacher}},
    teacher_ckpt={{_base_._teacher_ckpt}}, teacher_cache={{_base_._teacher_cache}},
    distill_losses=dict(loss_word=dict(type='SkewReverseKLDivergence', alpha=0.1, tau=1.0, loss_weight=1.0)))
