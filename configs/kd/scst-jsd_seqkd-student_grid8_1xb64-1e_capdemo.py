# SCST plus on-sample distillation for the plain grid8 student: starts from the same-seed
# sequence-KD run and fine-tunes one epoch with the CIDEr-D reward (greedy baseline) plus a
# generalised JSD (beta 0.5, GKD) to the frozen demo teacher on the student's sampled
# captions. Same schedule as scst_baseline-student_grid8_1xb64-1e_capdemo.py (SCST of the
# scratch student, no teacher): that row is its comparison without distillation.
_base_ = ['./seqkd_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py']
_start = 'seqkd_teacher-to-student_grid16-grid8_1xb64-6e_capdemo'
model = dict(
    _delete_=True, type='SelfCriticalCaptioner',
    captioner={{_base_.model.student}},
    student_ckpt=f'work_dirs/kd_table/{_start}/seed0/epoch_6.pth',
    references=dict(ann_file='data/capdemo/language/capdemo_caption.json',
                    split_file='data/capdemo/splits/capdemo_train_list.json'),
    sampler=dict(temperature=1.0, num_samples=5, seed=0),
    baseline='greedy',
    kd=dict(teacher={{_base_.model.teacher}}, teacher_ckpt={{_base_.model.teacher_ckpt}},
            loss=dict(type='GeneralizedJSDivergence', beta=0.5, tau=1.0), weight=1.0))
optim_wrapper = dict(optimizer=dict(lr=5e-5))
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1, save_best='CIDEr',
                                     rule='greater'))
load_from = None
