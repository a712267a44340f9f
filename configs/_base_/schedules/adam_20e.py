# The reference schedule: Adam, lr 2e-4, 20 epochs, constant learning rate.
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=2e-4),
                     clip_grad=dict(max_norm=1.0))
# mmengine's epoch loop, which also resumes the checkpoints saved inside an epoch
train_cfg = dict(type='ResumableEpochTrainLoop', max_epochs=20, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = []
