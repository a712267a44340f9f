# (a) SFTCap as the reference code trains it on MSVD: shared-weight teacher/student
# paths, t=0.5, lam_o=lam_a=0 (the published command), 15 frames, 22 tokens,
# Adam lr 2e-4, batch 64, 20 epochs, CLIP ViT-B/32 features, CLIP BPE vocabulary; the
# teacher path learns each video's teacher caption (highest mean TF-IDF).
_base_ = ['../_base_/models/sftcap_clip-b32.py', '../_base_/datasets/msvd_clip-b32.py',
          '../_base_/schedules/adam_20e.py', '../_base_/default_runtime.py']
train_dataloader = dict(dataset=dict(teacher_caption=True))
