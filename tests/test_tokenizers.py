"""Tokenisers: one interface; the word vocabulary is built once from training captions."""
import json

import pytest

from capdistill.datasets import ClipBPETokenizer, DataError, WordTokenizer
from capdistill.registry import TOKENIZERS


def _data(tmp_path):
    ann = tmp_path / 'cap.json'
    ann.write_text(json.dumps(dict(sentences=[
        dict(video_id='a', caption='a man is running'), dict(video_id='a', caption='a man runs'),
        dict(video_id='b', caption='a zebra is sleeping')])))
    split = tmp_path / 'train.json'
    split.write_text('["a"]')
    return dict(ann_file=str(ann), split_file=str(split))


def test_word_vocab_built_from_training_split_and_reloaded(tmp_path):
    build_from = _data(tmp_path)
    vocab = str(tmp_path / 'run' / 'vocab.json')
    cfg = dict(type='WordTokenizer', vocab_file=vocab, build_from=build_from, min_count=2)
    tok = TOKENIZERS.build(cfg)
    assert tok.itos[4:] == ['a', 'man']  # min_count=2, training split only
    assert tok.encode('a zebra') == [4, tok.unk_id]
    # testing builds the tokenizer from the same config: it reads the saved file
    again = WordTokenizer(vocab_file=vocab)
    assert again.itos == tok.itos
    ids = tok.encode_padded('a man', 4)
    assert ids.tolist() == [1, 4, 5, 2, 0, 0] and again.decode(ids) == 'a man'
    with pytest.raises(DataError, match=r'vocab\.json was built with min_count=2 \(config: 1\)'):
        WordTokenizer(vocab_file=vocab, build_from=build_from, min_count=1)
    # new captions in the same annotation file: the old vocabulary is refused, not reused
    ann = build_from['ann_file']
    with open(ann) as f:
        text = f.read()
    with open(ann, 'w') as f:
        f.write(text.replace('man', 'woman'))
    with pytest.raises(DataError, match='built from another version of .*delete it'):
        WordTokenizer(vocab_file=vocab, build_from=build_from, min_count=2)


def test_missing_vocab_without_build_from(tmp_path):
    with pytest.raises(FileNotFoundError, match='build_from'):
        WordTokenizer(vocab_file=str(tmp_path / 'none.json'))


def test_clip_bpe_interface():
    tok = ClipBPETokenizer()
    assert tok.vocab_size == 49408
    ids = tok.encode_padded('a man is slicing an onion', 10)
    assert ids[0] == tok.bos_id and tok.eos_id in ids.tolist()
    assert tok.decode(ids) == 'a man is slicing an onion'
