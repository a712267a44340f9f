# Shared part of the 20%-captioned study on capdemo: 20% of the train videos keep their
# captions (splits/capdemo_train-cap20_list.json, chosen by the data seed; written by
# tools/make_demo_data.py), the other 80% (capdemo_train-unl80_list.json) are unlabeled.
# Everything trained here (teacher, scratch student, word vocabulary) sees the captions
# of the 20% only. Student schedule: 30 epochs over the 840 captioned samples, the same
# number of samples (25,200; about 400 steps at batch 64) as the 6-epoch rows of the
# full table.
_base_ = ['./_kd_base_capdemo.py']

tokenizer = dict(type='WordTokenizer', vocab_file='data/capdemo/language/vocab-cap20.json',
                 build_from=dict(ann_file='data/capdemo/language/capdemo_caption.json',
                                 split_file='data/capdemo/splits/capdemo_train-cap20_list.json'))
train_dataloader = dict(dataset=dict(split_file='splits/capdemo_train-cap20_list.json',
                                     tokenizer=tokenizer))
val_dataloader = dict(dataset=dict(tokenizer=tokenizer))
test_dataloader = dict(dataset=dict(tokenizer=tokenizer))
model = dict(tokenizer=tokenizer)
_student = dict(tokenizer=tokenizer)
_teacher = dict(tokenizer=tokenizer)
_teacher_ckpt = 'work_dirs/baseline_teacher_grid16_1xb64-40e_capdemo-cap20/epoch_40.pth'

train_cfg = dict(max_epochs=30, val_interval=30)
default_hooks = dict(checkpoint=dict(interval=30))
