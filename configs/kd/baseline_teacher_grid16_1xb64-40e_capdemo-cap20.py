# The teacher of the 20%-captioned study, trained on the captioned 20% of capdemo's train
# videos only: 40 epochs over them, the same number of steps as the full-data teacher's 8.
_base_ = ['../capdemo/baseline_teacher_grid16_1xb64-8e_capdemo.py']

tokenizer = dict(type='WordTokenizer', vocab_file='data/capdemo/language/vocab-cap20.json',
                 build_from=dict(ann_file='data/capdemo/language/capdemo_caption.json',
                                 split_file='data/capdemo/splits/capdemo_train-cap20_list.json'))
train_dataloader = dict(dataset=dict(split_file='splits/capdemo_train-cap20_list.json',
                                     tokenizer=tokenizer))
val_dataloader = dict(dataset=dict(tokenizer=tokenizer))
test_dataloader = dict(dataset=dict(tokenizer=tokenizer))
model = dict(tokenizer=tokenizer)
train_cfg = dict(max_epochs=40, val_interval=40)
default_hooks = dict(checkpoint=dict(interval=40))
