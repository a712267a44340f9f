# (b) ViT-L/14 teacher -> ViT-B/32 student on MSR-VTT's official videodatainfo.json layout
# (6513/497/2990); train sftcap_teacher_clip-l14_1xb64-20e_msrvtt-official.py first.
_base_ = ['./sftcap_l14-to-b32_clip_1xb64-20e_msrvtt.py']
model = dict(
    teacher_ckpt='work_dirs/sftcap_teacher_clip-l14_1xb64-20e_msrvtt-official/best')
_official = dict(ann_file='annotation/videodatainfo.json', allow_pickle=False)
train_dataloader = dict(dataset=_official)
val_dataloader = dict(dataset=_official)
test_dataloader = dict(dataset=_official)
