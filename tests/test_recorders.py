"""Recorders, connectors, wiring checks, the teacher guard and the teacher cache."""
import json
import os

import pytest
import torch
from mmengine.registry import DefaultScope
from torch import nn

from capdistill.models.distillers import (DistillAlgorithm, ModuleOutputRecorder, RecorderError,
                                          TeacherChangedError, parse_source)
from capdistill.registry import MODELS

WORDS = ['a', 'red', 'ball', 'spins', 'moves']


def _captioner(in_dim, embed, key, encoder=None):
    return dict(type='Captioner', feature_key=key,
                visual_encoder=dict(type='FeatureProjector', in_dim=in_dim, embed_dim=embed),
                encoder=encoder or dict(type='IdentityEncoder'),
                head=dict(type='PrefixLMHead', embed_dim=embed, depth=1, num_heads=2),
                tokenizer=dict(type='WordTokenizer', words=WORDS), max_len=5)


def _batch(b=3, t=4):
    g = torch.Generator().manual_seed(0)
    inputs = dict(feats=torch.randn(b, t, 6, generator=g), feats_mask=torch.ones(b, t, dtype=bool),
                  teacher_feats=torch.randn(b, t, 10, generator=g),
                  teacher_feats_mask=torch.ones(b, t, dtype=bool))
    tokens = torch.tensor([[1, 4, 5, 6, 2, 0, 0], [1, 3, 4, 2, 0, 0, 0], [1, 7, 6, 2, 0, 0, 0]])
    return inputs, dict(tokens=tokens[:b], video_id=[f'v{i}' for i in range(b)])


def _algo(**kw):
    teacher = kw.pop('teacher', _captioner(10, 16, 'teacher_feats',
                                           dict(type='TransformerEncoder', embed_dim=16,
                                                depth=1, num_heads=2)))
    with DefaultScope.overwrite_default_scope('capdistill'):
        return MODELS.build(dict(type='DistillAlgorithm', student=_captioner(6, 8, 'feats'),
                                 teacher=teacher, allow_random_teacher=True, **kw))


FEAT = dict(recorders=dict(s=dict(source='student', module='visual_encoder', output=0),
                           t=dict(source='teacher', module='encoder', output=0)),
            connectors=dict(up=dict(type='LinearConnector', in_dim=8, out_dim=16)),
            distill_losses=dict(loss_feat=dict(type='FeatureMSELoss',
                                          inputs=dict(student='up(s)', teacher='t',
                                                      mask='data.feats_mask'))))


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)

    def forward(self, x):
        return self.b(self.a(self.a(x)))


def test_recorder_hooks_one_instance_and_indexes_steps():
    model = Twice()
    class_forward = nn.Linear.forward
    rec = ModuleOutputRecorder(model, 'a', step='stack')
    last = ModuleOutputRecorder(model, 'a', step=-1)
    other = ModuleOutputRecorder(model, 'b')
    for r in (rec, last, other):
        r.start()
    x = torch.randn(3, 2)
    model(x)
    for r in (rec, last, other):
        r.stop()
    assert nn.Linear.forward is class_forward          # no class-wide patching
    assert rec.get().shape == (3, 2, 2)                 # two calls, stacked on dim 1
    assert torch.equal(rec.get()[:, 0], model.a(x))
    assert torch.equal(last.get(), model.a(model.a(x)))
    assert len(other.records) == 1                      # b's hook saw only b
    single = ModuleOutputRecorder(model, 'a')
    single.start()
    model(x)
    single.stop()
    with pytest.raises(RecorderError, match='step='):
        single.get()
    single.remove()
    assert not model.a._forward_hooks.get(id(single)) and single.handle is None
    n = len(model.a._forward_hooks)
    rec.remove()
    assert len(model.a._forward_hooks) == n - 1


def test_parse_source():
    assert parse_source('obj(s_obj)') == (['obj'], 's_obj')
    assert parse_source(' b( a(x) ) ') == (['b', 'a'], 'x')
    assert parse_source('t_logits') == ([], 't_logits')


def test_connector_wiring_trains_connector_and_student():
    algo = _algo(**FEAT)
    algo.train()
    losses = algo(*_batch(), mode='loss')
    assert set(losses) == {'student.loss_caption', 'distill.loss_feat'}
    losses['distill.loss_feat'].backward()
    assert algo.connectors.up.proj.weight.grad is not None
    assert algo.student.visual_encoder.proj.weight.grad is not None
    assert any(k.startswith('connectors.') for k in algo.state_dict())
    assert not any(k.startswith('teacher') for k in algo.state_dict())


@pytest.mark.parametrize('change,match', [
    (dict(recorders=dict(s=dict(source='student', module='visual_encodr'),
                         t=FEAT['recorders']['t'])),
     "no module 'visual_encodr'.*Did you mean: visual_encoder"),
    (dict(connectors={}), "connector 'up'"),
    (dict(distill_losses=dict(loss_feat=dict(type='FeatureMSELoss', inputs=dict(student='up(s)')))),
     r"argument\(s\) \['teacher'\]"),
    (dict(distill_losses=dict(loss_feat=dict(type='FeatureMSELoss',
                                        inputs=dict(student='s', teacher='nothing')))),
     "no tensor 'nothing'"),
    (dict(distill_losses=dict(loss_feat=dict(type='FeatureMSELoss',
                                        inputs=dict(student='s', teacher='t', extra='t')))),
     r"no argument\(s\) \['extra'\]"),
])
def test_wiring_errors_at_build(change, match):
    with pytest.raises((RecorderError, ValueError), match=match):
        _algo(**dict(FEAT, **change))


def test_recorder_that_never_fires_stops_the_build():
    # caption_loss exists but is not called by the teacher-forced forward: the build's
    # dry forward finds it (without dry_run, the first step does)
    cfg = dict(FEAT)
    cfg['recorders'] = dict(FEAT['recorders'], s=dict(source='student', module='caption_loss'))
    with pytest.raises(RecorderError, match="'s' never fired: student.caption_loss"):
        _algo(**cfg)
    algo = _algo(dry_run=False, **cfg)
    with pytest.raises(RecorderError, match="'s' never fired: student.caption_loss"):
        algo(*_batch(), mode='loss')


def test_teacher_guard_detects_changed_weights():
    algo = _algo(distill_losses=dict(loss_kd=dict(type='WordKLLoss')), teacher_check_interval=1)
    algo(*_batch(), mode='loss')                      # unchanged: passes
    with torch.no_grad():
        next(algo.teacher.parameters()).add_(1e-3)
    with pytest.raises(TeacherChangedError, match='teacher weights changed'):
        algo(*_batch(), mode='loss')
    algo2 = _algo(distill_losses=dict(loss_kd=dict(type='WordKLLoss')))
    algo2.teacher.requires_grad_(True)
    with pytest.raises(TeacherChangedError, match='unfrozen'):
        algo2.check_teacher()


def test_teacher_cache_round_trip(tmp_path, monkeypatch):
    cfg = dict(FEAT, distill_losses=dict(FEAT['distill_losses'],
                                         loss_kd=dict(type='WordKLLoss', tau=1.0)),
               teacher_cache=dict(cache_dir=str(tmp_path / 'cache'), topk=None))
    algo = _algo(**cfg)
    algo.eval()  # no dropout: both passes see the same student
    first = algo(*_batch(), mode='loss')
    assert len([f for f in os.listdir(tmp_path / 'cache') if f.endswith('.safetensors')]) == 3
    algo(*_batch(), mode='loss')  # the first batch read is checked against the teacher
    assert algo.teacher_cache.verified_batches == 1

    def no_teacher(*a, **k):
        raise AssertionError('teacher ran although its outputs are cached')

    monkeypatch.setattr(algo.teacher, 'caption_logits', no_teacher)
    second = algo(*_batch(), mode='loss')
    for k in first:
        assert torch.allclose(first[k], second[k], atol=1e-5), k
    # top-k: a truncated teacher is renormalised over its k words
    algo_k = _algo(**dict(cfg, teacher_cache=dict(cache_dir=str(tmp_path / 'k'), topk=3)))
    algo_k.eval()
    algo_k(*_batch(), mode='loss')
    cached = algo_k(*_batch(), mode='loss')
    assert torch.isfinite(cached['distill.loss_kd'])


@pytest.mark.parametrize('topk', [None, 3])
def test_teacher_cache_gone_stale_stops_the_run(tmp_path, topk):
    """Teacher inputs that change between epochs (here: other teacher features for the
    same captions, as random frame sampling or augmentation would give) make the cached
    outputs wrong: the checked read stops the run instead of training on them."""
    from capdistill.models.distillers.teacher_cache import TeacherCacheError
    cfg = dict(FEAT, distill_losses=dict(FEAT['distill_losses'],
                                         loss_kd=dict(type='WordKLLoss', tau=1.0)),
               teacher_cache=dict(cache_dir=str(tmp_path / 'cache'), topk=topk))
    torch.manual_seed(0)  # the same teacher weights in each build below
    algo = _algo(**cfg)
    algo(*_batch(), mode='loss')                       # fills the cache
    inputs, samples = _batch()
    moved = dict(inputs, teacher_feats=inputs['teacher_feats'] + 0.5)
    with pytest.raises(TeacherCacheError, match=r'cached t(_logits)? of caption v\d-\w+ '
                       r'differ from what the teacher computes now.*model\.teacher_cache=None'):
        algo(moved, samples, mode='loss')
    # unchanged inputs pass the check; verify_every=0 never runs the teacher on a read
    torch.manual_seed(0)
    again = _algo(**cfg)
    again(*_batch(), mode='loss')
    assert again.teacher_cache.verified_batches == 1
    torch.manual_seed(0)
    unchecked = _algo(**dict(cfg, teacher_cache=dict(cfg['teacher_cache'], verify_every=0)))
    unchecked(moved, samples, mode='loss')
    assert unchecked.teacher_cache.verified_batches == 0


def test_teacher_cache_check_schedule(tmp_path):
    from capdistill.models.distillers.teacher_cache import TeacherCache
    cache = TeacherCache(str(tmp_path), verify_every=4)
    assert [cache.due_for_check() for _ in range(9)] == [True, False, False, True, False,
                                                         False, False, True, False]
    with pytest.raises(ValueError, match='verify_every must be an integer >= 0'):
        TeacherCache(str(tmp_path), verify_every=-1)
    with pytest.raises(ValueError, match='tolerance must be a number >= 0'):
        TeacherCache(str(tmp_path), tolerance='1e-2')


def test_teacher_cache_settings_stop_the_tools_in_one_line(tmp_path):
    """A bad teacher_cache setting is a user error (one line from the tools), not a
    traceback."""
    from capdistill.models.distillers.teacher_cache import TeacherCache
    from capdistill.utils.cli import user_errors
    for bad in (dict(mode='often'), dict(verify_every=-1), dict(tolerance=-1), dict(topk=0),
                dict(topk=2.5)):
        with pytest.raises(user_errors()):
            TeacherCache(str(tmp_path), **bad)


def test_teacher_cache_of_another_teacher_stops_the_run(tmp_path):
    """A cache folder holds one teacher's outputs: the same teacher reads it again, another
    teacher (other weights, other top-k) is refused before it could read them."""
    from capdistill.models.distillers.teacher_cache import TeacherCacheError
    cfg = dict(distill_losses=dict(loss_kd=dict(type='WordKLLoss', tau=1.0)),
               teacher_cache=dict(cache_dir=str(tmp_path / 'cache'), topk=3))
    torch.manual_seed(0)
    _algo(**cfg)(*_batch(), mode='loss')
    signature = json.loads((tmp_path / 'cache' / 'teacher.json').read_text())
    assert signature['topk'] == 3 and len(signature['teacher_weights']) == 20
    torch.manual_seed(0)
    _algo(**cfg)  # the same teacher (same weights): the folder is its own
    torch.manual_seed(1)
    with pytest.raises(TeacherCacheError, match=r'another teacher \(teacher_weights differ'):
        _algo(**cfg)
    torch.manual_seed(0)
    with pytest.raises(TeacherCacheError, match=r'\(topk differ'):
        _algo(**dict(cfg, teacher_cache=dict(cfg['teacher_cache'], topk=5)))


def test_sequence_kd_decodes_each_video_once(tmp_path):
    cache = tmp_path / 'seq.json'
    torch.manual_seed(0)
    algo = _algo(seq_kd=dict(beam_size=2, cache_file=str(cache)),
                 distill_losses=dict(loss_seq=dict(type='SequenceKDLoss',
                                              inputs=dict(student='seq_logits',
                                                          targets='seq_targets'))))
    calls = []
    generate = algo.teacher.generate
    algo.teacher.generate = lambda inputs, **kw: calls.append(kw) or generate(inputs, **kw)
    losses = algo(*_batch(), mode='loss')
    assert torch.isfinite(losses['distill.loss_seq']) and calls == [dict(strategy='beam',
                                                                    beam_size=2)]
    algo(*_batch(), mode='loss')
    assert len(calls) == 1 and cache.is_file()
    seq = dict(loss_seq=dict(type='SequenceKDLoss',
                             inputs=dict(student='seq_logits', targets='seq_targets')))
    torch.manual_seed(0)  # the same teacher reads the captions it decoded
    again = _algo(seq_kd=dict(beam_size=2, cache_file=str(cache)), distill_losses=seq)
    assert set(again._seq_captions) == {'v0', 'v1', 'v2'}
    # another teacher, or another beam, would train on captions it did not decode
    from capdistill.models.distillers.teacher_cache import TeacherCacheError
    torch.manual_seed(1)
    with pytest.raises(TeacherCacheError, match=r'seq\.json holds the outputs of another '
                                                r'teacher \(teacher_weights differ'):
        _algo(seq_kd=dict(beam_size=2, cache_file=str(cache)), distill_losses=seq)
    torch.manual_seed(0)
    with pytest.raises(TeacherCacheError, match=r'\(beam_size differ'):
        _algo(seq_kd=dict(beam_size=3, cache_file=str(cache)), distill_losses=seq)


def test_isinstance_algorithm():
    assert isinstance(_algo(), DistillAlgorithm)


def _fill_cache(cache_dir, rounds, start):
    from capdistill.models.distillers.teacher_cache import TeacherCache
    cache = TeacherCache(cache_dir, topk=4)
    logits = torch.randn(3, 5, 10)
    start.wait()  # both writers at once
    for _ in range(rounds):
        cache.save(['a', 'b', 'c'], [5, 4, 3], dict(t_logits=logits))


def test_teacher_cache_filled_by_two_processes_at_once(tmp_path):
    """Two runs sharing a cache may write the same caption's file at the same time."""
    import multiprocessing as mp

    from capdistill.models.distillers.teacher_cache import TeacherCache
    ctx = mp.get_context('spawn')
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_fill_cache, args=(str(tmp_path), 400, start)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(os.listdir(tmp_path)) == ['a.safetensors', 'b.safetensors', 'c.safetensors']
    out = TeacherCache(str(tmp_path), topk=4).load(['a', 'b', 'c'], 5, 10, ['t_logits'])
    assert out['t_logits'].shape == (3, 5, 10)
