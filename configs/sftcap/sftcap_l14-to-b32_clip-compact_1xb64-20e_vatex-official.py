# (b) with a compact student vocabulary on VATEX (the released per-split caption files):
# sftcap_l14-to-b32_clip_1xb64-20e_vatex-official.py, except that the student predicts only
# the CLIP BPE tokens of the training captions (plus PAD/BOS/EOS and the byte-level tokens
# that spell any other word). The list is built from the training file on the first run and
# saved beside it; the teacher keeps all 49,408 tokens (see the MSVD compact config).
_base_ = ['./sftcap_l14-to-b32_clip_1xb64-20e_vatex-official.py']
compact_tokenizer = dict(
    type='CompactTokenizer', base=dict(type='ClipBPETokenizer'),
    vocab_file='data/vatex/annotation/vatex_compact_bpe.json',
    build_from=dict(ann_file='data/vatex/annotation/vatex_training_v1.0.json'))
model = dict(student=dict(tokenizer=compact_tokenizer))
train_dataloader = dict(dataset=dict(tokenizer=compact_tokenizer))
val_dataloader = dict(dataset=dict(tokenizer=compact_tokenizer))
test_dataloader = dict(dataset=dict(tokenizer=compact_tokenizer))
