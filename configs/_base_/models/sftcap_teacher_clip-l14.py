# The separate SFTCap teacher of the paper's reading: CLIP ViT-L/14 features (768-d) ->
# 4-layer transformer stack -> HAM -> 4-layer BERT-style caption head, width 768.
model = dict(
    type='Captioner', feature_key='teacher_feats',
    visual_encoder=dict(type='FeatureProjector', in_dim=768, embed_dim=768, num_frames=15),
    encoder=dict(type='EncoderStack', encoders=[
        dict(type='TransformerEncoder', embed_dim=768, depth=4, num_heads=12),
        dict(type='HAM', embed_dim=768, num_actions=8, num_heads=12)]),
    head=dict(type='PrefixLMHead', embed_dim=768, depth=4, num_heads=12),
    tokenizer=dict(type='ClipBPETokenizer'),
    caption_loss=dict(type='LabelSmoothingLoss', smoothing=0.1),
    max_len=22)
