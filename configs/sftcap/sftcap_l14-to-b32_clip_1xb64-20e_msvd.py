# (b) the paper's reading on MSVD: a separate frozen teacher on CLIP ViT-L/14 features
# (trained first: sftcap_teacher_clip-l14_1xb64-20e_msvd.py) -> a light student on
# CLIP ViT-B/32 features. Model, wiring and switches: ../_base_/models/sftcap_distill.py.
# Terms on: object, action, word, grade; off: concept (the published command's
# lam_o = lam_a = 0).
_base_ = ['../_base_/models/sftcap_distill.py',
          '../_base_/datasets/msvd_clip-l14-b32.py', '../_base_/schedules/adam_20e.py',
          '../_base_/default_runtime.py']
model = dict(
    teacher_ckpt='work_dirs/sftcap_teacher_clip-l14_1xb64-20e_msvd/best',
    distill_losses=dict(loss_obj_concept=None, loss_act_concept=None))
train_dataloader = dict(dataset=dict(grade='tfidf'))
