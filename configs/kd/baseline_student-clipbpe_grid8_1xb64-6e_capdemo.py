# The plain grid8 student with CLIP's full byte-pair vocabulary (49,408 output rows), no
# teacher, 6 epochs: what the compact vocabulary is measured against in parameters and
# latency (baseline_student-compact_grid8_1xb64-6e_capdemo.py is its pruned twin).
_base_ = ['./_kd_base_capdemo.py']

# _delete_: the word tokenizer's keys (vocab_file, build_from) must not carry over
tokenizer = dict(_delete_=True, type='ClipBPETokenizer')
model = dict(tokenizer=tokenizer)
train_dataloader = dict(dataset=dict(tokenizer=tokenizer))
val_dataloader = dict(dataset=dict(tokenizer=tokenizer))
test_dataloader = dict(dataset=dict(tokenizer=tokenizer))
_student = dict(tokenizer=tokenizer)
_teacher = dict(tokenizer=tokenizer)
_teacher_ckpt = 'work_dirs/baseline_teacher-clipbpe_grid16_1xb64-4e_capdemo/epoch_4.pth'
