# (b) the paper's reading on VATEX (the released per-split caption files): a separate frozen
# teacher on CLIP ViT-L/14 features (trained first:
# sftcap_teacher_clip-l14_1xb64-20e_vatex-official.py) -> a light student on CLIP ViT-B/32
# features. Model, wiring and switches: ../_base_/models/sftcap_distill.py.
# Terms on: object, action, word, grade; off: concept.
_base_ = ['../_base_/models/sftcap_distill.py',
          '../_base_/datasets/vatex-official_clip-l14-b32.py',
          '../_base_/schedules/adam_20e.py', '../_base_/default_runtime.py']
model = dict(
    teacher_ckpt='work_dirs/sftcap_teacher_clip-l14_1xb64-20e_vatex-official/best',
    distill_losses=dict(loss_obj_concept=None, loss_act_concept=None))
train_dataloader = dict(dataset=dict(grade='tfidf'))
