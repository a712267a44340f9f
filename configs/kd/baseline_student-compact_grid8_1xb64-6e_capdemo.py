# The plain grid8 student with a compact vocabulary: CLIP's byte-pair tokens of capdemo's
# training captions (76) plus PAD/BOS/EOS, 79 output rows instead of 49,408
# (CompactTokenizer, as the SFTCap (b) compact configs), no teacher, 6 epochs: the
# same-architecture scratch baseline of the distilled compact row. No byte-level fallback
# (the SFTCap configs keep it: ~570 more rows): capdemo's captions come from a fixed grammar
# and its train captions hold every token of its valid and test captions, so nothing needs
# spelling; a caption with an unseen token would stop encoding with its name. The list is
# built from the training captions on first use and saved beside the data (with their hash).
_base_ = ['./baseline_student-clipbpe_grid8_1xb64-6e_capdemo.py']

compact_tokenizer = dict(
    type='CompactTokenizer', base=dict(type='ClipBPETokenizer'),
    vocab_file='data/capdemo/language/capdemo_compact_bpe.json',
    build_from=dict(ann_file='data/capdemo/language/capdemo_caption.json',
                    split_file='data/capdemo/splits/capdemo_train_list.json'),
    byte_fallback=False)
model = dict(tokenizer=compact_tokenizer)
train_dataloader = dict(dataset=dict(tokenizer=compact_tokenizer))
val_dataloader = dict(dataset=dict(tokenizer=compact_tokenizer))
test_dataloader = dict(dataset=dict(tokenizer=compact_tokenizer))
_student = dict(tokenizer=compact_tokenizer)
