"""Token ids of training captions cached beside the preprocessed annotations."""
import os

import numpy as np
from mmengine.registry import init_default_scope

from capdistill.datasets.preprocess import cached_token_ids
from capdistill.registry import DATASETS, TOKENIZERS

init_default_scope('capdistill')


class CountingTokenizer:
    """Wraps a real tokenizer and counts the captions it encodes."""

    def __init__(self, tok):
        self.tok, self.calls = tok, 0

    def __getattr__(self, name):
        return getattr(self.tok, name)

    def encode_padded(self, text, max_len):
        self.calls += 1
        return self.tok.encode_padded(text, max_len)


def _dataset(root, tokenizer, cache_dir, max_len=4, **kw):
    return DATASETS.build(dict(
        type='CaptionDataset', data_root=root, ann_file='language/tiny_caption.json',
        feature_dirs=dict(feats='visual/grid8/frame_feature'),
        split_file='splits/tiny_train_list.json', tokenizer=tokenizer, max_len=max_len,
        cache_dir=str(cache_dir), pipeline=[], **kw))


def _word_tokenizer(root):
    return TOKENIZERS.build(dict(
        type='WordTokenizer', words=['a', 'ball', 'red', 'the', 'object', 'shape']))


def test_second_build_reads_token_ids_and_they_are_the_tokenizers(tiny_root, tmp_path):
    tok = CountingTokenizer(_word_tokenizer(tiny_root))
    first = _dataset(tiny_root, tok, tmp_path, teacher_caption=True, grade='tfidf')
    n = len(first)
    assert tok.calls > 0  # encoded once per distinct caption
    files = [f for f in os.listdir(tmp_path) if f.endswith('.npy')]
    assert len(files) == 1 and files[0].startswith('tiny_caption.tokens.')
    # TF-IDF grades asked for: the consensus grades (leave-one-out CIDEr-D) are not computed
    assert not [f for f in os.listdir(tmp_path) if '.consensus.' in f]
    tok.calls = 0
    second = _dataset(tiny_root, tok, tmp_path, teacher_caption=True, grade='tfidf')
    assert tok.calls == 0 and len(second) == n
    for i in range(n):
        info = second.get_data_info(i)
        want = tok.tok.encode_padded(info['caption'], 4)
        assert info['tokens'].dtype == np.int64 and info['tokens'].tolist() == want.tolist()
        assert info['teacher_tokens'].tolist() == tok.tok.encode_padded(
            info['teacher_caption'], 4).tolist()
        assert info['tokens'].tolist() == first.get_data_info(i)['tokens'].tolist()


def test_another_vocabulary_or_length_or_damage_gives_fresh_ids(tiny_root, tmp_path):
    texts = ['a red ball rolls', 'the object', 'a red ball rolls', '']
    ann = os.path.join(tiny_root, 'language', 'tiny_caption.json')
    small = _word_tokenizer(tiny_root)
    ids, cut = cached_token_ids(ann, texts, small, 3, str(tmp_path))
    assert ids.tolist() == [small.encode_padded(t, 3).tolist() for t in texts]
    assert cut.tolist() == [True, False, True, False]  # 'a red ball rolls' has 4 words
    other = TOKENIZERS.build(dict(type='WordTokenizer', words=['rolls', 'red', 'a']))
    assert cached_token_ids(ann, texts, other, 3, str(tmp_path))[0].tolist() == [
        other.encode_padded(t, 3).tolist() for t in texts]
    longer, cut = cached_token_ids(ann, texts, small, 5, str(tmp_path))
    assert longer.shape == (4, 7) and not cut.any()
    assert len(os.listdir(tmp_path)) == 3
    for name in os.listdir(tmp_path):  # damaged files are rebuilt, not read
        with open(tmp_path / name, 'wb') as f:
            f.write(b'not an array')
    assert cached_token_ids(ann, texts, small, 3, str(tmp_path))[0].tolist() == ids.tolist()


def test_captions_longer_than_max_len_are_counted_in_the_log(tiny_root, tmp_path):
    """Cutting captions to ``max_len`` is said once, with the count, on every build."""
    import json
    import logging

    from mmengine.logging import MMLogger
    with open(os.path.join(tiny_root, 'language', 'tiny_caption.json')) as f:
        sentences = json.load(f)['sentences']
    with open(os.path.join(tiny_root, 'splits', 'tiny_train_list.json')) as f:
        train = set(json.load(f))
    words = [len(s['caption'].split()) for s in sentences if s['video_id'] in train]
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    MMLogger.get_current_instance().addHandler(handler)
    try:
        for max_len in (4, 4, max(words) - 1, max(words)):  # the second build reads the cache
            records.clear()
            ds = _dataset(tiny_root, _word_tokenizer(tiny_root), tmp_path, max_len,
                          teacher_caption=True)  # teacher captions: copies, not counted
            said = [r for r in records if 'training captions' in r]
            longer = sum(n > max_len for n in words)
            if longer:
                assert len(said) == 1 and (f'{longer} of {len(words)} training captions'
                                           in said[0]), said
            else:
                assert not said
            for info in map(ds.get_data_info, range(len(ds))):  # cut rows end with EOS
                assert info['tokens'].tolist() == ds.tokenizer.encode_padded(
                    info['caption'], max_len).tolist()
    finally:
        MMLogger.get_current_instance().removeHandler(handler)
