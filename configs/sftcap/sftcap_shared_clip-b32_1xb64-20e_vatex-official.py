# (a) shared-weight SFTCap on VATEX (the released per-split caption files), trained as the
# reference code trains it on MSVD / MSR-VTT: t=0.5, lam_o=lam_a=0, CLIP ViT-B/32 features;
# the teacher path learns each video's teacher caption.
_base_ = ['../_base_/models/sftcap_clip-b32.py', '../_base_/datasets/vatex-official_clip-b32.py',
          '../_base_/schedules/adam_20e.py', '../_base_/default_runtime.py']
train_dataloader = dict(dataset=dict(teacher_caption=True))
