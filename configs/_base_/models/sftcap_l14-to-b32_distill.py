# SFTCap (b), the paper's reading: a frozen CLIP ViT-L/14 teacher (transformer stack + HAM,
# width 768) distilled into the light CLIP ViT-B/32 student (HAM, width 256) at the object,
# action and word level. The dataset configs set the features; each config sets teacher_ckpt.
_base_ = ['./sftcap_teacher_clip-l14.py', './sftcap_student_clip-b32.py']
model = dict(
    _delete_=True,
    type='DistillAlgorithm', student={{_base_.student}}, teacher={{_base_.model}},
    teacher_ckpt=None,
    student_loss_weight=1.0,
    # object level: the student HAM's per-frame object features regress the teacher HAM's;
    # action level: their pooled action slots; word level: KL on the next-word distributions
    recorders=dict(s_obj=dict(source='student', module='encoder.objects'),
                   s_act=dict(source='student', module='encoder.actions'),
                   t_obj=dict(source='teacher', module='encoder.encoders.1.objects'),
                   t_act=dict(source='teacher', module='encoder.encoders.1.actions')),
    connectors=dict(obj=dict(type='LinearConnector', in_dim=256, out_dim=768),
                    act=dict(type='LinearConnector', in_dim=256, out_dim=768)),
    distill_losses=dict(
        loss_word=dict(type='WordKLLoss', tau=2.0, loss_weight=1.0),
        loss_obj=dict(type='ObjectDistillLoss', loss_weight=0.5,
                      inputs=dict(student='obj(s_obj)', teacher='t_obj',
                                  mask='data.feats_mask')),
        loss_act=dict(type='ActionDistillLoss', loss_weight=0.5,
                      inputs=dict(student='act(s_act)', teacher='t_act'))))
