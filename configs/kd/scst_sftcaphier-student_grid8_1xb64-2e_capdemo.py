# Self-critical sequence training (Rennie et al., CVPR 2017) of a distilled student:
# the seed-0 SFTCap hierarchy student of the kd table is fine-tuned on the CIDEr-D reward
# of its sampled captions minus its greedy caption's (document frequencies of the training
# split, cached under data/capdemo/language/.capdistill_cache/). Train the student first:
#   OMP_NUM_THREADS=1 python tools/analysis/run_kd_table.py --seeds 0 --only sftcaphier
_base_ = ['./sftcaphier_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py']
_distilled = 'sftcaphier_teacher-to-student_grid16-grid8_1xb64-6e_capdemo'
model = dict(
    _delete_=True, type='SelfCriticalCaptioner',
    captioner={{_base_.model.student}},
    student_ckpt=f'work_dirs/kd_table/{_distilled}/seed0/epoch_6.pth',
    references=dict(ann_file='data/capdemo/language/capdemo_caption.json',
                    split_file='data/capdemo/splits/capdemo_train_list.json'),
    sampler=dict(temperature=1.0, num_samples=5, seed=0),
    baseline='greedy')
# SCST needs no concepts; a small learning rate, as SCST after cross-entropy usually has
train_dataloader = dict(dataset=dict(concepts=None))
optim_wrapper = dict(optimizer=dict(lr=5e-5))
train_cfg = dict(max_epochs=2, val_interval=1)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1, save_best='CIDEr',
                                     rule='greater'))
load_from = None
