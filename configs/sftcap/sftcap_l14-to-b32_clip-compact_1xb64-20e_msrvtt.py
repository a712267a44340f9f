# (b) with a compact student vocabulary: sftcap_l14-to-b32_clip_1xb64-20e_msrvtt.py, except that the
# student predicts only the CLIP BPE tokens of the training captions (plus PAD/BOS/EOS and the
# byte-level tokens that spell any other word), not all 49,408: its output layer shrinks by the
# same factor. The list is built from the training captions on the first run and saved beside
# the data (with the captions' hash: rewritten annotations are refused). The teacher keeps the
# full vocabulary; the word term compares its distribution gathered onto the student's tokens
# and renormalised there (capdistill/models/distillers/vocab_map.py). The dataset tokenises with
# the student's tokenizer, so all three loaders name it. Parameters and latency: README.md.
_base_ = ['./sftcap_l14-to-b32_clip_1xb64-20e_msrvtt.py']
compact_tokenizer = dict(
    type='CompactTokenizer', base=dict(type='ClipBPETokenizer'),
    vocab_file='data/msrvtt/language/msrvtt_compact_bpe.json',
    build_from=dict(ann_file='data/msrvtt/language/msrvtt_caption.json',
                    split_file='data/msrvtt/splits/msrvtt_train_list.pkl', allow_pickle=True))
model = dict(student=dict(tokenizer=compact_tokenizer))
train_dataloader = dict(dataset=dict(tokenizer=compact_tokenizer))
val_dataloader = dict(dataset=dict(tokenizer=compact_tokenizer))
test_dataloader = dict(dataset=dict(tokenizer=compact_tokenizer))
