# VATEX as released: one caption file per split (lists of {videoID, enCap, chCap}; the
# English captions are read), no split files: every video of a split's file is in the split.
# Student ViT-B/32 and teacher ViT-L/14 features. Layout: data/README.md ("VATEX, official
# layout"). Without the public test file's captions, point the test split at another file.
_base_ = ['./vatex_clip-l14-b32.py']
_official = dict(split='all', allow_pickle=False)
train_dataloader = dict(dataset=dict(_official, ann_file='annotation/vatex_training_v1.0.json'))
val_dataloader = dict(dataset=dict(_official, ann_file='annotation/vatex_validation_v1.0.json'))
test_dataloader = dict(
    dataset=dict(_official, ann_file='annotation/vatex_public_test_english_v1.1.json'))
