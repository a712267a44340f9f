# The frozen teacher of (b), trained alone on MSVD CLIP ViT-L/14 features.
_base_ = ['../_base_/models/sftcap_teacher_clip-l14.py', '../_base_/datasets/msvd_clip-l14-b32.py',
          '../_base_/schedules/adam_20e.py', '../_base_/default_runtime.py']
