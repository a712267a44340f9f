# MSVD in the SFTCap reference release's layout (data/msvd/language, splits/*.pkl,
# visual/clip_{b32,l14}/frame_feature/<vid>.npy). Student reads CLIP ViT-B/32 features,
# a separate teacher (if any) CLIP ViT-L/14 features. 15 frames, 22 tokens, CLIP BPE.
data_root = 'data/msvd'
ann_file = 'language/msvd_caption.json'
num_frames = 15
max_len = 22
feature_dirs = dict(feats='visual/clip_b32/frame_feature',
                    teacher_feats='visual/clip_l14/frame_feature')
tokenizer = dict(type='ClipBPETokenizer')

train_pipeline = [dict(type='LoadFrameFeatures', num_frames=num_frames),
                  dict(type='PackCaptionInputs')]
test_pipeline = train_pipeline

_dataset = dict(type='CaptionDataset', data_root=data_root, ann_file=ann_file,
                feature_dirs=feature_dirs, tokenizer=tokenizer, max_len=max_len,
                allow_pickle=True, concepts=dict(max_objects=3, max_actions=3))

train_dataloader = dict(
    batch_size=64, num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(_dataset, split_file='splits/msvd_train_list.pkl', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64, num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_dataset, split_file='splits/msvd_valid_list.pkl', test_mode=True,
                 pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=64, num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(_dataset, split_file='splits/msvd_test_list.pkl', test_mode=True,
                 pipeline=test_pipeline))
val_evaluator = dict(type='CaptionMetric')
test_evaluator = val_evaluator
