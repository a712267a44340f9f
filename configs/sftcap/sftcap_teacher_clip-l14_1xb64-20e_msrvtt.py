# The frozen teacher of (b), trained alone on MSRVTT CLIP ViT-L/14 features.
_base_ = ['../_base_/models/sftcap_teacher_clip-l14.py', '../_base_/datasets/msrvtt_clip-l14-b32.py',
          '../_base_/schedules/adam_20e.py', '../_base_/default_runtime.py']
