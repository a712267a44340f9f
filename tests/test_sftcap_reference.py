"""SFTCap as the reference trains it: teacher caption, label choices, one concept loss,
one masked pooling helper and one label-smoothing implementation."""
import json
import os

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from capdistill.datasets.grading import tfidf_scores
from capdistill.models.losses import (ConceptPredictionLoss, LabelSmoothingLoss,
                                      QualityWeightedCaptionLoss, SequenceKDLoss,
                                      label_smoothed_nll)
from capdistill.models.pooling import masked_pool
from capdistill.registry import BACKBONES, DATASETS, MODELS
from conftest import make_tiny_dataset, write_tiny_config

VOCAB = 12


def tok_cfg(root):
    return dict(type='WordTokenizer', vocab_file=f'{root}/language/vocab.json',
                build_from=dict(ann_file=f'{root}/language/tiny_caption.json',
                                split_file=f'{root}/splits/tiny_train_list.json'))


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    return make_tiny_dataset(str(tmp_path_factory.mktemp('ref')))


def sftcap(root, **kw):
    cfg = dict(type='SFTCap', feature_key='feats',
               visual_encoder=dict(type='FeatureProjector', in_dim=24, embed_dim=32),
               teacher_encoder=dict(type='TransformerEncoder', embed_dim=32, depth=1,
                                    num_heads=2),
               encoder=dict(type='HAM', embed_dim=32, num_actions=3, num_heads=2, dropout=0.0),
               head=dict(type='PrefixLMHead', embed_dim=32, depth=1, num_heads=2, dropout=0.0),
               tokenizer=tok_cfg(root), max_len=6, t=0.5)
    cfg.update(kw)
    with DefaultScope.overwrite_default_scope('capdistill'):
        return MODELS.build(cfg)


def make_batch(b=3, t=6):
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[1, 4:] = False
    sampled = torch.tensor([[1, 5, 6, 7, 2, 0, 0, 0]] * b)
    teacher = torch.tensor([[1, 8, 9, 2, 0, 0, 0, 0]] * b)
    return (dict(feats=torch.randn(b, t, 24, generator=g), feats_mask=mask),
            dict(video_id=[f'v{i}' for i in range(b)], tokens=sampled,
                 weight=torch.tensor([1.0, 0.5, 0.25]),
                 teacher_tokens=list(teacher),  # as collation leaves it: a list
                 obj_tokens=torch.tensor([[5, 6, 0]] * b),
                 act_tokens=torch.tensor([[7, 0, 0]] * b)))


def test_teacher_path_learns_the_teacher_caption(root):
    torch.manual_seed(0)
    model = sftcap(root).eval()  # eval: no dropout, so paths can be recomputed exactly
    inputs, samples = make_batch()
    losses = model.loss(inputs, samples)
    teacher = torch.stack(samples['teacher_tokens'])
    logits_t = model.caption_logits(inputs, teacher, path='teacher')
    logits_s = model.caption_logits(inputs, samples['tokens'], path='student')
    # teacher path: teacher caption, unweighted; student path: sampled caption, graded
    assert torch.allclose(losses['loss_caption_teacher'],
                          0.5 * model.caption_loss(logits_t, teacher[:, 1:]))
    assert torch.allclose(losses['loss_caption_student'],
                          0.5 * model.caption_loss(logits_s, samples['tokens'][:, 1:],
                                                   samples['weight']))
    # the switch brings back the old behaviour: both paths on the sampled caption
    model.teacher_targets = 'sampled'
    old = model.loss(inputs, samples)
    logits_ts = model.caption_logits(inputs, samples['tokens'], path='teacher')
    assert torch.allclose(old['loss_caption_teacher'],
                          0.5 * model.caption_loss(logits_ts, samples['tokens'][:, 1:],
                                                   samples['weight']))
    assert not torch.allclose(old['loss_caption_teacher'], losses['loss_caption_teacher'])


def test_missing_teacher_caption_and_bad_switches_are_one_line_errors(root):
    model = sftcap(root)
    inputs, samples = make_batch()
    del samples['teacher_tokens']
    with pytest.raises(KeyError, match=r"teacher_tokens.*dataset.teacher_caption=True"):
        model.loss(inputs, samples)
    assert set(sftcap(root, teacher_targets='sampled').loss(inputs, samples)) == {
        'loss_caption_teacher', 'loss_caption_student'}
    with pytest.raises(ValueError, match='teacher_targets'):
        sftcap(root, teacher_targets='best')
    with pytest.raises(ValueError, match='action_labels'):
        sftcap(root, action_labels='nouns')
    with pytest.raises(ValueError, match='HAM'):
        sftcap(root, lam_o=0.1, encoder=dict(type='LSTMEncoder', embed_dim=32))


@pytest.mark.parametrize('labels,key', [('verbs', 'act_tokens'), ('objects', 'obj_tokens')])
def test_concept_terms_go_through_concept_prediction_loss(root, labels, key):
    torch.manual_seed(0)
    model = sftcap(root, lam_o=0.2, lam_a=0.3, action_labels=labels).eval()
    assert isinstance(model.concept_loss, ConceptPredictionLoss)
    inputs, samples = make_batch()
    losses = model.loss(inputs, samples)
    ref = ConceptPredictionLoss(pool='max')
    emb = model.head.word_embed.weight
    x, mask = model.visual_encoder(inputs['feats'], inputs['feats_mask'])
    for path, w in (('teacher', 0.5), ('student', 0.5)):
        xp, mp = model.teacher_encoder(x, mask) if path == 'teacher' else (x, mask)
        out = model.encoder.forward_features(xp, mp)
        assert torch.allclose(losses[f'loss_obj_{path}'],
                              w * 0.2 * ref(out['objects'], samples['obj_tokens'], emb,
                                            mask=out['frame_mask']))
        assert torch.allclose(losses[f'loss_act_{path}'],
                              w * 0.3 * ref(out['actions'], samples[key], emb))
    # the labels a weighted term needs are required; verbs are not when actions score nouns
    no_verbs = {k: v for k, v in samples.items() if k != 'act_tokens'}
    if labels == 'objects':
        assert set(model.loss(inputs, no_verbs)) == set(losses)
    else:
        with pytest.raises(KeyError, match=r"lam_a=0.3 needs 'act_tokens'"):
            model.loss(inputs, no_verbs)


def _build_dataset(root):
    return DATASETS.build(dict(
        type='CaptionDataset', data_root=root, ann_file='language/tiny_caption.json',
        feature_dirs=dict(feats='visual/grid8/frame_feature'), tokenizer=tok_cfg(root),
        split_file='splits/tiny_train_list.json', max_len=6, teacher_caption=True,
        cache_dir=os.path.join(root, 'cache'),
        pipeline=[dict(type='LoadFrameFeatures', num_frames=4),
                  dict(type='PackCaptionInputs')]))


def test_dataset_teacher_caption_is_the_top_tfidf_reference(root):
    with open(os.path.join(root, 'language', 'tiny_caption.json')) as f:
        sentences = json.load(f)['sentences']
    caps = {}
    for s in sentences:
        caps.setdefault(s['video_id'], []).append(s['caption'])
    scores = tfidf_scores(caps)
    with DefaultScope.overwrite_default_scope('capdistill'):
        ds = _build_dataset(root)
    seen = set()
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        best = caps[info['video_id']][int(np.argmax(scores[info['video_id']]))]
        assert info['teacher_caption'] == best
        packed = ds[i]['data_samples']
        assert torch.equal(packed['teacher_tokens'],
                           torch.as_tensor(ds.tokenizer.encode_padded(best, 6)))
        seen.add(info['caption'])
    assert len(seen) > len({ds.get_data_info(i)['teacher_caption'] for i in range(len(ds))})


def test_sftcap_trains_in_a_runner_on_the_teacher_caption(root, tmp_path):
    from mmengine.runner import Runner
    model = ("dict(type='SFTCap', feature_key='feats', "
             "visual_encoder=dict(type='FeatureProjector', in_dim=24, embed_dim=32), "
             "teacher_encoder=dict(type='TransformerEncoder', embed_dim=32, depth=1, num_heads=2), "
             "encoder=dict(type='HAM', embed_dim=32, num_actions=3, num_heads=2), "
             "head=dict(type='PrefixLMHead', embed_dim=32, depth=1, num_heads=2), "
             "tokenizer=tokenizer, max_len=6, lam_o=0.1, lam_a=0.1)")
    path = write_tiny_config(tmp_path / 'sftcap.py', root, model=model)
    cfg = Config.fromfile(path)
    cfg.train_dataloader.dataset.update(teacher_caption=True, concepts=dict(),
                                        cache_dir=str(tmp_path / 'cache'))
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1)
    # training only: no validation, no checkpoint (they cost most of the time here)
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.default_hooks.checkpoint = None
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    seen = []
    orig = runner.model.loss

    def spy(inputs, samples):
        seen.append(samples)
        return orig(inputs, samples)
    runner.model.loss = spy
    runner.train()
    assert seen and all('teacher_tokens' in s for s in seen)
    logs = runner.message_hub.log_scalars
    for key in ('loss_caption_teacher', 'loss_obj_teacher', 'loss_act_student'):
        assert np.isfinite(logs[f'train/{key}'].current()), key


def test_masked_pool_has_no_nan_for_fully_padded_rows():
    x = torch.randn(3, 4, 5, dtype=torch.double, requires_grad=True)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    for how in ('mean', 'max'):
        out = masked_pool(x, mask, how)
        assert torch.isfinite(out).all() and torch.equal(out[1], torch.zeros(5, dtype=x.dtype))
        ref = x[0, :2].mean(0) if how == 'mean' else x[0, :2].amax(0)
        assert torch.allclose(out[0], ref)
        out.sum().backward()
        assert torch.isfinite(x.grad).all() and torch.equal(x.grad[1], torch.zeros_like(x[1]))
        assert torch.equal(x.grad[0, 2:], torch.zeros_like(x[0, 2:]))  # padding gets none
        x.grad = None
    # NaN in padded rows (e.g. features of missing frames) never leaks into the result
    y = x.detach().clone()
    y[0, 3] = float('nan')
    assert torch.isfinite(masked_pool(y, mask, 'mean')).all()
    assert torch.isfinite(masked_pool(y, mask, 'max')).all()
    assert masked_pool(x, None, 'max').shape == (3, 5)
    with pytest.raises(ValueError, match='mask'):
        masked_pool(x, mask[:, :3])


def test_fully_padded_video_gives_finite_encoders_and_losses():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    with DefaultScope.overwrite_default_scope('capdistill'):
        ham = BACKBONES.build(dict(type='HAM', embed_dim=8, num_actions=2, num_heads=2))
        pooling = BACKBONES.build(dict(type='PoolingEncoder', mode='max'))
    out = ham.forward_features(x, mask)
    assert all(torch.isfinite(out[k]).all() for k in ('tokens', 'objects', 'actions'))
    assert torch.equal(pooling(x, mask)[0][1], torch.zeros(1, 8))
    emb = torch.randn(VOCAB, 8)
    concepts = torch.tensor([[3, 4], [5, 0]])
    loss = ConceptPredictionLoss()(out['objects'], concepts, emb, mask=mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_label_smoothing_is_written_once():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, VOCAB)
    target = torch.tensor([[3, 2, 5, 0], [1, 7, 0, 0]])
    weight = torch.tensor([1.0, 0.3])
    ls = LabelSmoothingLoss(smoothing=0.1)
    # the brute-force definition: KL(q || p) with q built explicitly
    q = torch.full_like(logits, 0.1 / (VOCAB - 1)).scatter_(-1, target[..., None], 0.9)
    kl = (q * (q.log() - logits.log_softmax(-1))).sum(-1)
    assert torch.allclose(label_smoothed_nll(logits, target, 0.1), kl, atol=1e-6)
    m = (target != 0).float()
    assert torch.allclose(ls(logits, target), (kl * m).sum() / m.sum(), atol=1e-6)
    assert torch.allclose(QualityWeightedCaptionLoss(smoothing=0.1)(logits, target, weight),
                          ls(logits, target, weight), atol=1e-6)
    assert torch.allclose(SequenceKDLoss(smoothing=0.1)(logits, target), ls(logits, target))
    assert torch.allclose(SequenceKDLoss()(logits, target),
                          LabelSmoothingLoss(smoothing=0.0)(logits, target))


def test_quality_weighted_loss_without_grades_is_refused():
    with pytest.raises(ValueError, match=r"grade='tfidf'"):
        QualityWeightedCaptionLoss()(torch.randn(1, 2, VOCAB), torch.tensor([[1, 2]]))
