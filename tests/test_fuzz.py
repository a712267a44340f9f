"""Property-based fuzzing of the readers and the caption metric (fixed seed, bounded).

Each generated input must either load correctly or stop with a DataError: never a
crash from deep inside json/numpy/torch, never a silently wrong count.
"""
import json
import os
import tempfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capdistill.datasets.annotations import DataError, load_captions, load_split
from capdistill.datasets.tokenizers import WordTokenizer
from capdistill.datasets.transforms.loading import read_feature_file

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=60,
                suppress_health_check=[HealthCheck.too_slow])
ODD_TEXT = st.one_of(
    st.text(max_size=60),
    st.sampled_from(['', ' ', '\t\n', '...!?', '<b>a cat</b> runs', '&amp; &lt;', '🙂🎬',
                     '一只猫在跑', 'a\u2028man\rwalks', ' '.join(['word'] * 1000)]),
)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def _write(data, suffix='.json', raw=False):
    fd, path = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, 'wb' if raw else 'w') as f:
        f.write(data) if raw else json.dump(data, f)
    return path


@FUZZ
@given(st.one_of(JSON, st.fixed_dictionaries({'sentences': JSON}),
                 st.fixed_dictionaries({'metadata': st.lists(JSON, max_size=4)})))
def test_random_annotation_structures(data):
    path = _write(data)
    try:
        captions = load_captions(path)
    except DataError as err:
        assert path in str(err)
    else:
        assert all(isinstance(v, str) and v for v in captions)
        assert all(c.strip() for caps in captions.values() for c in caps)
    finally:
        os.remove(path)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(['v1', 'v2', 'v3']), ODD_TEXT), min_size=1, max_size=6))
def test_odd_captions_load_or_are_named(entries):
    path = _write({'sentences': [{'video_id': v, 'caption': c} for v, c in entries]})
    try:
        captions = load_captions(path)
    except DataError as err:
        bad = [i for i, (_, c) in enumerate(entries) if not c.strip()]
        assert bad and f'entry {bad[0]}' in str(err)
    else:
        assert sum(len(c) for c in captions.values()) == len(entries)  # nothing dropped
        tok = WordTokenizer.build([c for caps in captions.values() for c in caps])
        for caps in captions.values():
            for cap in caps:
                ids = tok.encode_padded(cap, 22)
                assert ids.shape == (24,) and ids.max() < tok.vocab_size
    finally:
        os.remove(path)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_as_annotation_or_split(blob):
    for suffix, reader in (('.json', load_captions), ('.txt', load_split)):
        path = _write(blob, suffix, raw=True)
        try:
            reader(path)
        except DataError as err:
            assert path in str(err)
        finally:
            os.remove(path)


ARRAYS = st.tuples(
    st.lists(st.integers(0, 5), min_size=0, max_size=3),
    st.sampled_from(['float32', 'float16', 'float64', 'int8', 'bool']),
    st.sampled_from(['ok', 'nan', 'inf', 'truncate', 'empty-file']))


@FUZZ
@given(ARRAYS)
def test_random_feature_files(spec):
    shape, dtype, damage = spec
    arr = np.ones(shape, dtype=dtype)
    fd, path = tempfile.mkstemp(suffix='.npy')
    os.close(fd)
    np.save(path, arr)
    if damage in ('nan', 'inf') and arr.size and arr.dtype.kind == 'f':
        arr.flat[0] = np.nan if damage == 'nan' else np.inf
        np.save(path, arr)
    elif damage == 'truncate':
        data = open(path, 'rb').read()
        open(path, 'wb').write(data[:len(data) // 2])
    elif damage == 'empty-file':
        open(path, 'wb').close()
    try:
        out = read_feature_file(path, expected_dim=None)
    except DataError as err:
        assert path in str(err)
    else:
        assert out.ndim == 2 and out.shape[0] > 0 and out.dtype == np.float32
        assert np.isfinite(out).all()
    finally:
        os.remove(path)


@settings(derandomize=True, database=None, deadline=None, max_examples=12)
@given(st.lists(ODD_TEXT, min_size=2, max_size=2), st.lists(ODD_TEXT, min_size=1, max_size=3))
def test_caption_metric_on_odd_text(preds, refs):
    from capdistill.evaluation import score_captions
    refs = [r if r.strip() else 'a reference' for r in refs]
    scores = score_captions({'a': preds[0], 'b': preds[1]}, {'a': refs, 'b': refs[::-1]},
                            metrics=('Bleu', 'ROUGE_L', 'CIDEr', 'METEOR'))
    assert set(scores) >= {'Bleu_4', 'ROUGE_L', 'CIDEr', 'METEOR'}
    assert all(np.isfinite(v) and v >= 0 for v in scores.values())
