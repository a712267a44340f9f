# Teacher captioner: feature projection -> transformer encoder -> BERT-style prefix-LM head.
model = dict(
    type='Captioner',
    feature_key='teacher_feats',
    visual_encoder=dict(type='FeatureProjector', in_dim=768, embed_dim=256, dropout=0.1),
    encoder=dict(type='TransformerEncoder', embed_dim=256, depth=2, num_heads=4),
    head=dict(type='PrefixLMHead', embed_dim=256, depth=2, num_heads=4),
    tokenizer=dict(type='ClipBPETokenizer'),
    caption_loss=dict(type='LabelSmoothingLoss', smoothing=0.1),
    max_len=22,
)
