"""Caption metric: equality with pycocoevalcap, mmengine metric, odd inputs, errors."""
import json
import threading

import pytest

import capdistill  # noqa: F401  (compat patches)
from capdistill.evaluation import (CaptionMetric, JavaNotFoundError,
                                   SpiceModelsMissingError, score_captions)
from capdistill.evaluation import caption_scorer
from capdistill.evaluation.caption_scorer import UnknownMetricError
from capdistill.registry import METRICS

# skipped without Java, failed without it under CI=true (see conftest.py)
needs_java = pytest.mark.java

REFS = {
    'v1': ['A man is cooking pasta in the kitchen.', 'someone cooks food',
           'a chef is preparing a meal', 'A man is making spaghetti!'],
    'v2': ['two dogs are running on the grass', 'dogs play outside',
           'a dog chases another dog in a park'],
    'v3': ['a woman plays the guitar on a stage', 'a girl is singing and playing guitar',
           "a musician performs a song, it's loud"],
    'v4': ['a boy rides a bike', 'a kid is riding a bicycle down the street'],
}
PREDS = {'v1': 'a man is cooking in a kitchen', 'v2': 'a dog is running',
         'v3': 'a woman is playing a guitar', 'v4': 'a boy is riding a bike on the road'}


def _with_timeout(fn, seconds=60):
    out, err = [], []

    def target():
        try:
            out.append(fn())
        except BaseException as exc:  # noqa: B902
            err.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f'scoring did not finish within {seconds} s'
    if err:
        raise err[0]
    return out[0]


def _pycocoevalcap_direct(preds, refs):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{'caption': c} for c in refs[k]] for k in preds})
    res = tok.tokenize({k: [{'caption': preds[k]}] for k in preds})
    out, per_video = {}, {}
    bleu, bleu_v = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        out[f'Bleu_{n + 1}'] = bleu[n]
        per_video[f'Bleu_{n + 1}'] = bleu_v[n]
    meteor = Meteor()
    out['METEOR'], per_video['METEOR'] = meteor.compute_score(gts, res)
    del meteor
    out['ROUGE_L'], per_video['ROUGE_L'] = Rouge().compute_score(gts, res)
    out['CIDEr'], per_video['CIDEr'] = Cider().compute_score(gts, res)
    return out, per_video


@needs_java
def test_score_captions_equals_pycocoevalcap():
    expected, expected_videos = _pycocoevalcap_direct(PREDS, REFS)
    got = score_captions(PREDS, REFS, per_video=True)
    assert list(got['aggregate']) == ['Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'METEOR',
                                      'ROUGE_L', 'CIDEr']
    for key, value in expected.items():
        assert got['aggregate'][key] == value, key
        assert isinstance(got['aggregate'][key], float)
        for vid, v in zip(PREDS, expected_videos[key]):
            assert got['per_video'][vid][key] == v, (key, vid)
    # a second call reuses the METEOR JVM and gives the same numbers
    assert score_captions(PREDS, REFS) == got['aggregate']


@needs_java
def test_repeated_evaluation_tokenizes_and_scores_only_new_captions(monkeypatch):
    caption_scorer.clear_caches()
    score_captions(PREDS, REFS)
    preds2 = dict(PREDS, v2='two dogs run on the grass', v4='A kid rides a bicycle.')
    expected, expected_videos = _pycocoevalcap_direct(preds2, REFS)
    sent, real = [], caption_scorer.ptb_tokenize
    monkeypatch.setattr(caption_scorer, 'ptb_tokenize', lambda s: sent.extend(s) or real(s))
    before = len(caption_scorer._METEOR.stats)
    got = score_captions(preds2, REFS, per_video=True)
    # references and unchanged predictions came from the caches
    assert sent == ['two dogs run on the grass', 'A kid rides a bicycle.']
    assert len(caption_scorer._METEOR.stats) == before + 2
    for key, value in expected.items():
        assert got['aggregate'][key] == value, key
        for vid, v in zip(preds2, expected_videos[key]):
            assert got['per_video'][vid][key] == v, (key, vid)
    # caches that overflow are emptied, and the scores stay the same
    monkeypatch.setattr(caption_scorer, 'CACHE_ENTRIES', 3)
    preds3 = dict(PREDS, v1='a person cooks')
    assert score_captions(preds3, REFS) == _pycocoevalcap_direct(preds3, REFS)[0]
    assert len(caption_scorer._METEOR.stats) <= 4 and len(caption_scorer._PTB_CACHE) <= 14


@needs_java
def test_caption_metric_starts_meteor_with_the_first_batch():
    caption_scorer.shutdown_meteor()
    batch = [dict(video_id=v, pred_caption=PREDS[v], refs=REFS[v]) for v in PREDS]
    CaptionMetric(scorers=('CIDEr', )).process(None, batch)
    assert not caption_scorer._METEOR._alive()  # no METEOR asked, no JVM
    metric = CaptionMetric()
    assert not caption_scorer._METEOR._alive()
    metric.process(None, batch[:2])
    assert caption_scorer._METEOR._alive()  # loading while the next batches decode
    metric.process(None, batch[2:])
    assert metric.evaluate(4) == score_captions(PREDS, REFS)


@needs_java
def test_metric_subset_and_names():
    got = score_captions(PREDS, REFS, metrics=('CIDEr', 'bleu'))
    assert set(got) == {'CIDEr', 'Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4'}
    with pytest.raises(UnknownMetricError, match="Unknown caption metric 'BLEURT'"):
        score_captions(PREDS, REFS, metrics=('BLEURT', ))
    with pytest.raises(UnknownMetricError, match='metric list is empty; name at least one'):
        CaptionMetric(scorers=[])
    with pytest.raises(KeyError, match='no references'):
        score_captions({'zz': 'a cat'}, REFS)


@needs_java
def test_caption_metric_drops_duplicates_and_writes_json(tmp_path):
    out_file = tmp_path / 'nested' / 'dir' / 'preds.json'
    metric = METRICS.build(dict(type='CaptionMetric', out_file=str(out_file)))
    samples = [dict(video_id=v, pred_caption=PREDS[v], refs=REFS[v]) for v in PREDS]
    samples[0]['teacher_caption'] = 'a man cooks pasta'
    # DDP-style padding: the first videos again, with different captions
    padded = samples + [dict(video_id='v1', pred_caption='nonsense words here',
                             refs=REFS['v1']),
                        dict(video_id='v2', pred_caption='', refs=REFS['v2'])]
    metric.process(None, padded[:3])
    metric.process(None, padded[3:])
    scores = metric.evaluate(len(padded))
    assert scores == score_captions(PREDS, REFS)
    assert 'CIDEr' in scores  # plain keys: save_best='CIDEr' works

    data = json.loads(out_file.read_text())
    assert set(data) == {'predictions', 'per_video', 'aggregate', 'teacher_captions'}
    assert data['predictions'] == PREDS
    assert data['aggregate'] == scores
    assert set(data['per_video']) == set(PREDS)
    assert set(data['per_video']['v1']) == set(scores)
    assert data['teacher_captions'] == {'v1': 'a man cooks pasta'}


@needs_java
def test_caption_metric_prefix():
    metric = CaptionMetric(scorers=('CIDEr', ), prefix='caption')
    metric.process(None, [dict(video_id=v, pred_caption=PREDS[v], refs=REFS[v])
                          for v in PREDS])
    assert list(metric.evaluate(4)) == ['caption/CIDEr']


@needs_java
def test_odd_inputs_do_not_crash_or_hang():
    refs = {
        'empty': ['a man is talking', 'someone speaks'],
        'unicode': ['un café très chaud', 'a hot coffee'],
        'punct': ['a cat sleeps', 'the cat is asleep'],
        'long': ['a long caption about a dog', 'a dog runs'],
        'newline': ['a person\nwalks', 'someone is walking\r\nslowly'],
        'bars': ['a ||| b', 'x|||y z'],
        'spaces': ['   ', 'a woman sings'],
        'sep': ['a dog\u2028barks', 'a dog barks'],
    }
    preds = {
        'empty': '',
        'unicode': 'café 😀 naïve résumé 東京',
        'punct': '?!... ,;:',
        'long': ' '.join(['the dog runs fast'] * 200),
        'newline': 'a man\nis walking\r\nslowly\u2029here',
        'bars': 'a ||| b ||| c',
        'spaces': '   \t  ',
        'sep': 'a dog\x0bbarks\x85',
    }
    got = _with_timeout(lambda: score_captions(preds, refs, per_video=True))
    assert set(got['per_video']) == set(preds)
    for vid, values in got['per_video'].items():
        for key, value in values.items():
            assert value == value and value >= 0, (vid, key)  # no NaN
    assert got['per_video']['empty']['METEOR'] == 0.0
    assert got['per_video']['empty']['CIDEr'] == 0.0
    # the scorer is still usable afterwards
    assert _with_timeout(lambda: score_captions(PREDS, REFS))['METEOR'] > 0


def test_missing_java_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(caption_scorer.shutil, 'which', lambda name: None)
    with pytest.raises(JavaNotFoundError) as info:
        score_captions(PREDS, REFS)
    message = str(info.value)
    assert '\n' not in message
    assert 'METEOR needs a Java runtime (java not found on PATH)' in message
    assert 'default-jre-headless' in message and 'metrics' in message
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(JavaNotFoundError, match='tokenizer needs a Java runtime'):
        score_captions(PREDS, REFS, metrics=('CIDEr', ))


def test_missing_java_through_path(monkeypatch):
    monkeypatch.setenv('PATH', '/nonexistent')
    with pytest.raises(JavaNotFoundError, match='java not found on PATH'):
        score_captions(PREDS, REFS)


@needs_java
def test_meteor_process_death_raises(monkeypatch):
    score_captions(PREDS, REFS, metrics=('METEOR', ))
    proc = caption_scorer._METEOR.proc
    proc.kill()
    proc.wait()
    # a dead JVM is noticed and restarted on the next call
    assert score_captions(PREDS, REFS, metrics=('METEOR', ))['METEOR'] > 0

    # a JVM that dies while scoring gives an error instead of a hang
    monkeypatch.setattr(caption_scorer, 'METEOR_JAVA_OPTIONS', ('-Xmx2G', ))
    caption_scorer.shutdown_meteor()
    monkeypatch.setattr(caption_scorer, '_package_dir',
                        lambda sub: str(_fake_meteor_dir(sub)))
    with pytest.raises(caption_scorer.MeteorError, match='METEOR'):
        _with_timeout(lambda: caption_scorer._METEOR.compute_score(
            {'a': ['x y']}, {'a': ['x']}, ['a']), 30)
    caption_scorer.shutdown_meteor()


def _fake_meteor_dir(sub, _cache={}):
    """A folder whose meteor-1.5.jar is not a jar: java exits at once."""
    if sub not in _cache:
        import tempfile
        from pathlib import Path
        folder = Path(tempfile.mkdtemp(prefix='fake_meteor_'))
        (folder / 'meteor-1.5.jar').write_bytes(b'not a jar')
        _cache[sub] = folder
    return _cache[sub]


def test_spice_missing_models_message(monkeypatch, tmp_path):
    monkeypatch.setattr(caption_scorer, '_package_dir', lambda sub: str(tmp_path / sub))
    monkeypatch.setattr(caption_scorer.shutil, 'which', lambda name: '/usr/bin/java')
    with pytest.raises(SpiceModelsMissingError) as info:
        score_captions(PREDS, REFS, metrics=('SPICE', ))
    message = str(info.value)
    assert '\n' not in message
    assert 'Stanford CoreNLP 3.6.0' in message
    assert str(tmp_path / 'spice' / 'lib') in message
    assert 'will not download' in message
