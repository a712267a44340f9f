# The light SFTCap student: CLIP ViT-B/32 features (512-d) -> HAM -> 2-layer BERT-style
# caption head, width 256, CLIP BPE vocabulary (shared with the teacher for word KD).
student = dict(
    type='Captioner', feature_key='feats',
    visual_encoder=dict(type='FeatureProjector', in_dim=512, embed_dim=256, num_frames=15),
    encoder=dict(type='HAM', embed_dim=256, num_actions=8, num_heads=4),
    head=dict(type='PrefixLMHead', embed_dim=256, depth=2, num_heads=4),
    tokenizer=dict(type='ClipBPETokenizer'),
    # the grade term of (b): each caption's label-smoothed loss weighted by its grade
    caption_loss=dict(type='QualityWeightedCaptionLoss', smoothing=0.1, gamma=1.0),
    max_len=22)
