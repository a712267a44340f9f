# capdemo: procedurally rendered videos made by capdistill (tools/make_demo_data.py);
# not a real-world corpus. Teacher reads fine 16x16-grid features, student 8x8-grid.
data_root = 'data/capdemo'
ann_file = 'language/capdemo_caption.json'
num_frames = 16
max_len = 16
feature_dirs = dict(feats='visual/grid8/frame_feature',
                    teacher_feats='visual/grid16/frame_feature')
tokenizer = dict(type='WordTokenizer', vocab_file='data/capdemo/language/vocab.json',
                 build_from=dict(ann_file='data/capdemo/language/capdemo_caption.json',
                                 split_file='data/capdemo/splits/capdemo_train_list.json'))

train_pipeline = [dict(type='LoadFrameFeatures', num_frames=num_frames, cache=True),
                  dict(type='PackCaptionInputs')]
test_pipeline = train_pipeline

_dataset = dict(type='CaptionDataset', data_root=data_root, ann_file=ann_file,
                feature_dirs=feature_dirs, tokenizer=tokenizer, max_len=max_len)

train_dataloader = dict(
    batch_size=64, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(_dataset, split_file='splits/capdemo_train_list.json',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_dataset, split_file='splits/capdemo_valid_list.json', test_mode=True,
                 pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=64, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_dataset, split_file='splits/capdemo_test_list.json', test_mode=True,
                 pipeline=test_pipeline))
val_evaluator = dict(type='CaptionMetric')
test_evaluator = val_evaluator
