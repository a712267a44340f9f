# (b) on the capdemo features: a teacher (transformer + HAM, width 256) on 16x16-grid
# features -> a student (HAM, width 96) on 8x8-grid features, with object-, action- and
# word-level distillation wired as on real data (../_base_/models/sftcap_l14-to-b32_distill.py);
# smaller models, so connectors 96 -> 256.
_base_ = ['../_base_/models/sftcap_l14-to-b32_distill.py',
          '../_base_/datasets/capdemo_grid16-grid8.py', '../_base_/schedules/adam_20e.py',
          '../_base_/default_runtime.py']
model = dict(
    student=dict(
        _delete_=True, type='Captioner', feature_key='feats',
        visual_encoder=dict(type='FeatureProjector', in_dim=192, embed_dim=96, num_frames=16),
        encoder=dict(type='HAM', embed_dim=96, num_actions=8, num_heads=4),
        head=dict(type='PrefixLMHead', embed_dim=96, depth=1, num_heads=4),
        tokenizer={{_base_.tokenizer}}, max_len={{_base_.max_len}}),
    teacher=dict(
        _delete_=True, type='Captioner', feature_key='teacher_feats',
        visual_encoder=dict(type='FeatureProjector', in_dim=768, embed_dim=256, num_frames=16),
        encoder=dict(type='EncoderStack', encoders=[
            dict(type='TransformerEncoder', embed_dim=256, depth=4, num_heads=4),
            dict(type='HAM', embed_dim=256, num_actions=8, num_heads=4)]),
        head=dict(type='PrefixLMHead', embed_dim=256, depth=4, num_heads=4),
        tokenizer={{_base_.tokenizer}}, max_len={{_base_.max_len}}),
    connectors=dict(obj=dict(in_dim=96, out_dim=256), act=dict(in_dim=96, out_dim=256)))
optim_wrapper = dict(optimizer=dict(lr=5e-4))
train_cfg = dict(max_epochs=12, val_interval=12)
