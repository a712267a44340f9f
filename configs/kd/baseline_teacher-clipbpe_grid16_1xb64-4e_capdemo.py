# The demo teacher (grid16 features, 2-layer encoder, 2-block head, width 256) with CLIP's
# byte-pair vocabulary (49,408 tokens, ClipBPETokenizer) instead of capdemo's 74 words: the
# teacher of the compact-vocabulary rows, whose students predict a pruned CLIP vocabulary.
# Randomly initialised word embedding (no CLIP weights ship here). 4 epochs, not the word
# teacher's 8: its 49,408-way output layer makes a step 2.5x as long (measured, README), so
# 8 epochs would take about an hour on 2 busy cores. Trained by
# tools/analysis/run_kd_table.py when missing.
_base_ = ['../capdemo/baseline_teacher_grid16_1xb64-8e_capdemo.py']

# _delete_: the word tokenizer's keys (vocab_file, build_from) must not carry over
tokenizer = dict(_delete_=True, type='ClipBPETokenizer')
model = dict(tokenizer=tokenizer)
train_dataloader = dict(dataset=dict(tokenizer=tokenizer))
val_dataloader = dict(dataset=dict(tokenizer=tokenizer))
test_dataloader = dict(dataset=dict(tokenizer=tokenizer))
train_cfg = dict(max_epochs=4, val_interval=4)
default_hooks = dict(checkpoint=dict(interval=4))
