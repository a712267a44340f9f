# The SFTCap hierarchy as the paper describes it: object-level, action-level and
# word-level distillation, plus noun/verb concept prediction. The student gets a HAM
# temporal encoder (object features per frame, 4 action slots); the dataset adds the
# teacher caption's nouns/verbs (concepts=...).
_base_ = ['./_kd_base_capdemo.py']
_concepts = dict(max_objects=3, max_actions=3)
train_dataloader = dict(dataset=dict(concepts=_concepts))
_student = dict(
    type='Captioner', feature_key='feats',
    visual_encoder=dict(type='FeatureProjector', in_dim=192, embed_dim=128, dropout=0.1),
    encoder=dict(type='HAM', embed_dim=128, num_actions=4, num_heads=4),
    head=dict(type='PrefixLMHead', embed_dim=128, depth=1, num_heads=4),
    tokenizer={{_base_.tokenizer}},
    caption_loss=dict(type='LabelSmoothingLoss', smoothing=0.1),
    max_len={{_base_.max_len}})
model = dict(
    _delete_=True, type='DistillAlgorithm',
    student=_student, teacher={{_base_._teacher}},
    teacher_ckpt={{_base_._teacher_ckpt}},
    recorders=dict(s_obj=dict(source='student', module='encoder.objects'),
                   s_act=dict(source='student', module='encoder.actions'),
                   t_tok=dict(source='teacher', module='encoder', output=0)),
    connectors=dict(obj=dict(type='LinearConnector', in_dim=128, out_dim=256),
                    act=dict(type='LinearConnector', in_dim=128, out_dim=256)),
    distill_losses=dict(
        loss_word=dict(type='WordKLLoss', tau=2.0, loss_weight=1.0),
        loss_obj=dict(type='ObjectDistillLoss', loss_weight=0.5,
                      inputs=dict(student='obj(s_obj)', teacher='t_tok',
                                  mask='data.feats_mask')),
        loss_act=dict(type='ActionDistillLoss', loss_weight=0.5,
                      inputs=dict(student='act(s_act)', teacher='t_tok',
                                  teacher_mask='data.teacher_feats_mask')),
        loss_obj_concept=dict(type='ConceptPredictionLoss', loss_weight=0.1,
                              inputs=dict(feats='s_obj', concepts='data.obj_tokens',
                                          embedding='s_word_embed', mask='data.feats_mask')),
        loss_act_concept=dict(type='ConceptPredictionLoss', loss_weight=0.1,
                              inputs=dict(feats='s_act', concepts='data.act_tokens',
                                          embedding='s_word_embed'))))
