# SFTCap (reference code): one network, shared weights. Teacher path = FeatureProjector ->
# transformer stack -> HAM; student path = FeatureProjector -> HAM; one 2-layer BERT-style
# caption head over [frame tokens; global token; words] with CLIP's token embedding.
model = dict(
    type='SFTCap',
    feature_key='feats',
    visual_encoder=dict(type='FeatureProjector', in_dim=512, embed_dim=512, num_frames=15,
                        dropout=0.1),
    teacher_encoder=dict(type='TransformerEncoder', embed_dim=512, depth=2, num_heads=8),
    encoder=dict(type='HAM', embed_dim=512, num_actions=8, num_heads=8),
    head=dict(type='PrefixLMHead', embed_dim=512, depth=2, num_heads=8,
              clip_embedding='model_zoo/clip_model/ViT-B-32.pt'),
    tokenizer=dict(type='ClipBPETokenizer'),
    caption_loss=dict(type='LabelSmoothingLoss', smoothing=0.1),
    t=0.5, lam_o=0.0, lam_a=0.0,
    # the teacher path learns each video's teacher caption (needs the dataset option
    # teacher_caption=True); 'sampled': both paths on the sampled caption
    teacher_targets='teacher_caption',
    # the action concepts are the teacher caption's verbs (the paper, and the reference's
    # non-shared branch); 'objects': its nouns, as the reference's shared-weight branch does
    action_labels='verbs',
    max_len=22,
    decode=dict(strategy='greedy', use_cache=True),
)
