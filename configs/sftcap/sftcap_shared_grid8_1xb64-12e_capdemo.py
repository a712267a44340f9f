# (a) on the capdemo features (procedurally generated, not a real corpus), small widths
# so it runs on a CPU: shared-weight teacher/student paths over 8x8-grid features; the
# teacher path learns the teacher caption, lam_o = lam_a = 0.1 use its nouns and verbs.
_base_ = ['../_base_/models/sftcap_clip-b32.py', '../_base_/datasets/capdemo_grid16-grid8.py',
          '../_base_/schedules/adam_20e.py', '../_base_/default_runtime.py']
model = dict(
    visual_encoder=dict(in_dim=192, embed_dim=128, num_frames={{_base_.num_frames}}),
    teacher_encoder=dict(embed_dim=128, num_heads=4),
    encoder=dict(embed_dim=128, num_heads=4),
    head=dict(embed_dim=128, num_heads=4, clip_embedding=None),
    tokenizer={{_base_.tokenizer}}, max_len={{_base_.max_len}},
    lam_o=0.1, lam_a=0.1)
train_dataloader = dict(dataset=dict(
    teacher_caption=True, concepts=dict(max_objects=3, max_actions=3)))
optim_wrapper = dict(optimizer=dict(lr=5e-4))
train_cfg = dict(max_epochs=12, val_interval=12)
frame_encoder = dict(type='PixelGridEncoder', grid=8)
