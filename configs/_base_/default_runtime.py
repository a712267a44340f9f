default_scope = 'capdistill'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2,
                    save_best='CIDEr', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # capdistill's run guards: re-seed every epoch (resumed runs replay the same randomness),
    # stop on NaN/Inf losses, and stop before the first step when a loss term reads data the
    # training set does not provide. Default hooks (a dict, merged key by key), so a config's
    # own custom_hooks list keeps them; switch one off with default_hooks=dict(finite_loss=None).
    epoch_seed=dict(type='EpochSeedHook'),
    finite_loss=dict(type='FiniteLossHook'),
    data_requirements=dict(type='DataRequirementsHook'),
    # mmengine loads load_from / resume checkpoints non-strictly: this stops a run whose
    # checkpoint does not fit its model instead of training or testing it half loaded
    checkpoint_match=dict(type='CheckpointMatchHook'),
    # checkpoints inside long epochs (every `interval` iterations; 0: none), which --resume
    # continues where they stopped: e.g. default_hooks.mid_epoch_checkpoint.interval=500
    mid_epoch_checkpoint=dict(type='MidEpochCheckpointHook', interval=0),
)

# Torch threads per process: 'auto' = half this process's share of the available cores
# (at least 1; OMP_NUM_THREADS wins when set), or an integer. Dataloaders with
# num_workers='auto' get up to 4 workers from the cores left (capdistill.engine.setup).
cpu_threads = 'auto'

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

# Scalars go to <work_dir>/<time>/vis_data/scalars.json (tools/analysis/analyze_logs.py reads
# them). TensorBoard as well is one line in a config (pip install tensorboard):
#   visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
# W&B: dict(type='WandbVisBackend', init_kwargs=dict(project='capdistill')) (pip install wandb);
# MLflow: dict(type='MLflowVisBackend', exp_name='capdistill') (pip install mlflow).
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)

log_processor = dict(type='LogProcessor', window_size=20, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
