# Skew KL per caption token, KL(p_T || 0.1 p_T + 0.9 q_S) (DistiLLM, Ko et al., ICML 2024,
# alpha 0.1), on the reference captions; DistiLLM's adaptive student-generated outputs are
# not used (see configs/kd/README.md).
_base_ = ['./_divergence_base_capdemo.py']
model = dict(
    _delete_=True, type='DistillAlgorithm',
    student={{_base_._student}}, teacher={{_base_._teacher}},
    teacher_ckpt={{_base_._teacher_ckpt}}, teacher_cache={{_base_._teacher_cache}},
    distill_losses=dict(loss_word=dict(type='SkewKLDivergence', alpha=0.1, tau=1.0, loss_weight=1.0)))
