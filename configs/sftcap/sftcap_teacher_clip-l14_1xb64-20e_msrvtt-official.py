# The frozen teacher of (b) on MSR-VTT's official videodatainfo.json layout (6513/497/2990).
_base_ = ['./sftcap_teacher_clip-l14_1xb64-20e_msrvtt.py']
_official = dict(ann_file='annotation/videodatainfo.json', allow_pickle=False)
train_dataloader = dict(dataset=_official)
val_dataloader = dict(dataset=_official)
test_dataloader = dict(dataset=_official)
