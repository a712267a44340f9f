# Self-critical sequence training of the kd table's seed-0 scratch student for one epoch
# (the measured row of configs/kd/README.md; needs no teacher). Train the student first:
#   OMP_NUM_THREADS=1 python tools/analysis/run_kd_table.py --seeds 0 --only baseline_student
_base_ = ['./baseline_student_grid8_1xb64-6e_capdemo.py']
_start = 'baseline_student_grid8_1xb64-6e_capdemo'
model = dict(
    _delete_=True, type='SelfCriticalCaptioner', captioner={{_base_.model}},
    student_ckpt=f'work_dirs/kd_table/{_start}/seed0/epoch_6.pth',
    references=dict(ann_file='data/capdemo/language/capdemo_caption.json',
                    split_file='data/capdemo/splits/capdemo_train_list.json'),
    sampler=dict(temperature=1.0, num_samples=5, seed=0), baseline='greedy')
optim_wrapper = dict(optimizer=dict(lr=5e-5))
train_cfg = dict(max_epochs=1, val_interval=1)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1, save_best='CIDEr',
                                     rule='greater'))
load_from = None
