# MSR-VTT from the official annotation/videodatainfo.json (no split files: the 6513/497/2990
# train/validate/test split comes from its "videos" entries), with both feature sets:
# student ViT-B/32 and teacher ViT-L/14. Layout: data/README.md ("MSR-VTT, official layout").
_base_ = ['./msrvtt_clip-l14-b32.py']
ann_file = 'annotation/videodatainfo.json'
_official = dict(ann_file=ann_file, allow_pickle=False)  # a json: nothing to unpickle
_dataset = _official
train_dataloader = dict(dataset=_official)
val_dataloader = dict(dataset=_official)
test_dataloader = dict(dataset=_official)
