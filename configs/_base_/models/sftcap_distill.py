# SFTCap (b), the paper's reading: THE definition of SFTCap distillation in this repository.
# configs/sftcap/sftcap_l14-to-b32_*, configs/sftcap/sftcap_grid16-to-grid8_* and
# configs/kd/sftcaphier_* derive from it and differ only in data, model sizes and switches.
#
# A frozen teacher (transformer stack + HAM; here CLIP ViT-L/14, width 768) teaches a light
# student (HAM + 2-layer head; CLIP ViT-B/32, width 256). Every term is on here; a derived
# config (or --cfg-options) switches one off as follows:
#   object  : model.distill_losses.loss_obj=None model.connectors.obj=None
#   action  : model.distill_losses.loss_act=None model.connectors.act=None
#   word    : model.distill_losses.loss_word=None
#   concept : model.distill_losses.loss_obj_concept=None model.distill_losses.loss_act_concept=None
#             (on, it needs train_dataloader.dataset.concepts=dict(max_objects=3, max_actions=3))
#   grade   : model.student.caption_loss.gamma=0 (the plain label-smoothed loss)
#             (on, it needs train_dataloader.dataset.grade='tfidf')
# A term that is on but whose data the batches lack stops the first step, naming the key.
# Weights 0.5 / 0.5 / 1.0 / 0.1 are our choice: the paper's code has no explicit terms.
_base_ = ['./sftcap_teacher_clip-l14.py', './sftcap_student_clip-b32.py']
model = dict(
    _delete_=True,
    type='DistillAlgorithm',
    student={{_base_.student}},  # its caption loss is the grade term
    teacher={{_base_.model}},
    teacher_ckpt=None,  # each derived config names its teacher run: work_dirs/<run>/best
    student_loss_weight=1.0,
    recorders=dict(s_obj=dict(source='student', module='encoder.objects'),
                   s_act=dict(source='student', module='encoder.actions'),
                   t_obj=dict(source='teacher', module='encoder.encoders.1.objects'),
                   t_act=dict(source='teacher', module='encoder.encoders.1.actions')),
    connectors=dict(obj=dict(type='LinearConnector', in_dim=256, out_dim=768),
                    act=dict(type='LinearConnector', in_dim=256, out_dim=768)),
    distill_losses=dict(
        # word: KL between the teacher's and the student's next-word distributions
        loss_word=dict(type='WordKLLoss', tau=2.0, loss_weight=1.0),
        # object: the student HAM's per-frame object features regress the teacher HAM's
        loss_obj=dict(type='ObjectDistillLoss', loss_weight=0.5,
                      inputs=dict(student='obj(s_obj)', teacher='t_obj',
                                  mask='data.feats_mask')),
        # action: the pooled action slots of the two HAMs
        loss_act=dict(type='ActionDistillLoss', loss_weight=0.5,
                      inputs=dict(student='act(s_act)', teacher='t_act')),
        # concept: object / action features predict the teacher caption's nouns / verbs
        loss_obj_concept=dict(type='ConceptPredictionLoss', loss_weight=0.1,
                              inputs=dict(feats='s_obj', concepts='data.obj_tokens',
                                          embedding='s_word_embed', mask='data.feats_mask')),
        loss_act_concept=dict(type='ConceptPredictionLoss', loss_weight=0.1,
                              inputs=dict(feats='s_act', concepts='data.act_tokens',
                                          embedding='s_word_embed'))))
