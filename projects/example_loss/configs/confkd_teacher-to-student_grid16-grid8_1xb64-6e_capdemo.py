# Confidence-weighted word KD on the capdemo data: the loss class lives in this project
# folder and is registered by importing it (custom_imports), capdistill/ is untouched.
# Run from the repository root (the tools put it on the module path for custom_imports):
#   python tools/train.py projects/example_loss/configs/confkd_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py
_base_ = ['../../../configs/kd/_kd_base_capdemo.py']
custom_imports = dict(imports=['projects.example_loss.confidence_kd'],
                      allow_failed_imports=False)
model = dict(
    _delete_=True, type='DistillAlgorithm',
    student={{_base_._student}}, teacher={{_base_._teacher}},
    teacher_ckpt={{_base_._teacher_ckpt}},
    distill_losses=dict(loss_word=dict(
        type='ConfidenceWeightedWordKLLoss', tau=2.0, beta=1.0, loss_weight=1.0,
        inputs=dict(student='s_logits', teacher='t_logits', targets='targets',
                    mask='mask'))))
