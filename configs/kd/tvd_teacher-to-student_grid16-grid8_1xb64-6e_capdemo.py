# Total variation distance per caption token, 1/2 sum_v |p_T - q_S| (Wen et al., ACL 2023,
# applied per token), on the reference captions.
_base_ = ['./_divergence_base_capdemo.py']
model = dict(
    _delete_=True, type='DistillAlgorithm',
    student={{_base_._student}}, teacher={{_base_._teacher}},
    teacher_ckpt={{_base_._teacher_ckpt}}, teacher_cache={{_base_._teacher_cache}},
    distill_losses=dict(loss_word=dict(type='TotalVariationDistance', tau=1.0, loss_weight=1.0)))
