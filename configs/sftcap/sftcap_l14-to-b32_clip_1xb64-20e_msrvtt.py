# (b) the paper's reading on MSRVTT: a separate frozen teacher on CLIP ViT-L/14 features
# (trained first: sftcap_teacher_clip-l14_1xb64-20e_msrvtt.py) -> a light student on
# CLIP ViT-B/32 features, with object-, action- and word-level distillation
# (the model and its wiring: ../_base_/models/sftcap_l14-to-b32_distill.py).
_base_ = ['../_base_/models/sftcap_l14-to-b32_distill.py',
          '../_base_/datasets/msrvtt_clip-l14-b32.py', '../_base_/schedules/adam_20e.py',
          '../_base_/default_runtime.py']
model = dict(teacher_ckpt='work_dirs/sftcap_teacher_clip-l14_1xb64-20e_msrvtt/best')
