# (b) the paper's reading on MSVD: a separate frozen teacher on CLIP ViT-L/14 features
# (trained first: sftcap_teacher_clip-l14_1xb64-20e_msvd.py) -> a light student on
# CLIP ViT-B/32 features. Word-level KD (WordKLLoss) now; the object/action distillation
# losses join distill_losses once they exist (teacher features: 'encoder.encoders.1.objects'
# / '.actions'; student: 'encoder.objects' / 'encoder.actions').
_base_ = ['../_base_/models/sftcap_teacher_clip-l14.py',
          '../_base_/models/sftcap_student_clip-b32.py',
          '../_base_/datasets/msvd_clip-l14-b32.py', '../_base_/schedules/adam_20e.py',
          '../_base_/default_runtime.py']
model = dict(
    _delete_=True,
    type='DistillAlgorithm', student={{_base_.student}}, teacher={{_base_.model}},
    teacher_ckpt='work_dirs/sftcap_teacher_clip-l14_1xb64-20e_msvd/best_CIDEr.pth',
    student_loss_weight=1.0,
    distill_losses=dict(loss_word=dict(type='WordKLLoss', tau=2.0, loss_weight=1.0)))
