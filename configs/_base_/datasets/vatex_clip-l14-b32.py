# VATEX: language/vatex_caption.json (list of {videoID, enCap}), splits/vatex_<split>_list.json
# (or .txt), visual/clip_{b32,l14}/frame_feature/<videoID>.npy. An HDF5 file works too:
# feature_dirs=dict(feats='visual/clip_b32.h5', ...) with one dataset per video id.
data_root = 'data/vatex'
ann_file = 'language/vatex_caption.json'
num_frames = 15
max_len = 22
feature_dirs = dict(feats='visual/clip_b32/frame_feature',
                    teacher_feats='visual/clip_l14/frame_feature')
tokenizer = dict(type='ClipBPETokenizer')

train_pipeline = [dict(type='LoadFrameFeatures', num_frames=num_frames),
                  dict(type='PackCaptionInputs')]
test_pipeline = train_pipeline

# grade=None|'tfidf'|'consensus' sets the per-caption loss weight; concepts adds the
# teacher caption's nouns/verbs (obj_tokens/act_tokens) to every sample.
_dataset = dict(type='VATEXDataset', data_root=data_root, ann_file=ann_file,
                feature_dirs=feature_dirs, tokenizer=tokenizer, max_len=max_len,
                grade=None, concepts=dict(max_objects=3, max_actions=3))

train_dataloader = dict(
    batch_size=64, num_workers='auto', persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(_dataset, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64, num_workers='auto', persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_dataset, split='valid', test_mode=True, pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=64, num_workers='auto', persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_dataset, split='test', test_mode=True, pipeline=test_pipeline))
val_evaluator = dict(type='CaptionMetric')
test_evaluator = val_evaluator
