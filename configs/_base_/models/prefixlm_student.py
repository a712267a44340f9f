# Lightweight student: feature projection -> (no temporal encoder) -> 1-block prefix-LM head.
model = dict(
    type='Captioner',
    feature_key='feats',
    visual_encoder=dict(type='FeatureProjector', in_dim=512, embed_dim=128, dropout=0.1),
    encoder=dict(type='IdentityEncoder'),
    head=dict(type='PrefixLMHead', embed_dim=128, depth=1, num_heads=4),
    tokenizer=dict(type='ClipBPETokenizer'),
    caption_loss=dict(type='LabelSmoothingLoss', smoothing=0.1),
    max_len=22,
)
