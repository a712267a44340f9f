# The frozen teacher of (b), trained alone on VATEX (the released per-split caption files)
# with CLIP ViT-L/14 features.
_base_ = ['../_base_/models/sftcap_teacher_clip-l14.py',
          '../_base_/datasets/vatex-official_clip-l14-b32.py',
          '../_base_/schedules/adam_20e.py', '../_base_/default_runtime.py']
