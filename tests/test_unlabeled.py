"""Videos without captions: counted, masked out of every caption-based term, used by
sequence KD, refused where nothing learns from them; capdemo's captioned fraction."""
import json
import os

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

from capdistill.datasets.annotations import DataError
from capdistill.datasets.demo import make_demo_dataset
from capdistill.datasets.demo.build import captioned_split, captioned_split_files
from capdistill.registry import DATASETS, MODELS
from conftest import REPO, make_tiny_dataset, run_tool, run_tool_here

KD = os.path.join(REPO, 'configs/kd')
SEQKD_CFG = 'seqkd_teacher-to-student_grid16-grid8_1xb64-6e_capdemo-cap20-unl80.py'
SCRATCH_CFG = 'baseline_student_grid8_1xb64-30e_capdemo-cap20.py'


def _write(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f)
    return str(path)


def _dataset(root, **kw):
    tok = dict(type='WordTokenizer', vocab_file=f'{root}/language/vocab.json',
               build_from=dict(ann_file=f'{root}/language/tiny_caption.json',
                               split_file=f'{root}/splits/tiny_train_list.json'))
    cfg = dict(type='CaptionDataset', data_root=root, ann_file='language/tiny_caption.json',
               split_file='splits/tiny_train_list.json', tokenizer=tok, max_len=6,
               feature_dirs=dict(feats='visual/grid8/frame_feature',
                                 teacher_feats='visual/grid16/frame_feature'),
               pipeline=[dict(type='LoadFrameFeatures', num_frames=4),
                         dict(type='PackCaptionInputs')])
    with DefaultScope.overwrite_default_scope('capdistill'):
        return DATASETS.build(dict(cfg, **kw))


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """tiny layout (8 train videos, 3 captions each) plus one video with features only."""
    root = make_tiny_dataset(str(tmp_path_factory.mktemp('unl')))
    for name, dim in (('grid8', 24), ('grid16', 48)):
        np.save(f'{root}/visual/{name}/frame_feature/extra000.npy',
                np.ones((6, dim), np.float32))
    return root


def test_counts_flags_and_dummy_captions(tiny, tmp_path):
    # two split videos lose their captions, one uncaptioned video comes from outside
    unl = _write(tmp_path / 'unl.json', ['vid006', 'vid007', 'extra000'])
    ds = _dataset(tiny, unlabeled_ids=unl, unlabeled_repeat=2)
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    labeled = [d for d in infos if d['labeled']]
    unlabeled = [d for d in infos if not d['labeled']]
    assert len(labeled) == 6 * 3 and len(unlabeled) == 3 * 2 and len(ds) == 24
    assert (ds.num_labeled_videos, ds.num_unlabeled_videos) == (6, 3)
    assert {d['video_id'] for d in labeled} == {f'vid{i:03d}' for i in range(6)}
    assert sorted(d['video_id'] for d in unlabeled) == sorted(
        ['vid006', 'vid007', 'extra000'] * 2)
    pad, bos = ds.tokenizer.pad_id, ds.tokenizer.bos_id
    for d in unlabeled:  # no target token: no caption loss can count them
        assert d['caption'] == '' and d['weight'] == 0.0
        assert d['tokens'][0] == bos and (d['tokens'][1:] == pad).all()
    # the batch carries the flag as a bool tensor
    with DefaultScope.overwrite_default_scope('capdistill'):
        prep = MODELS.build(dict(type='CaptionDataPreprocessor'))
    from mmengine.dataset import pseudo_collate
    batch = prep(pseudo_collate([ds[i] for i in (0, len(ds) - 1)]))
    assert batch['data_samples']['labeled'].dtype == torch.bool
    assert batch['data_samples']['labeled'].tolist() == [True, False]
    # without unlabeled_ids every training sample is labeled, nothing else changes
    plain = _dataset(tiny)
    assert len(plain) == 8 * 3 and all(plain.get_data_info(i)['labeled']
                                       for i in range(len(plain)))


def test_bad_unlabeled_input_is_one_clear_error(tiny, tmp_path):
    missing = _write(tmp_path / 'missing.json', ['vid006', 'nofeat'])
    with pytest.raises(DataError, match=r"1 of 9 videos .*unlabeled_ids.*nofeat: no feats"):
        _dataset(tiny, unlabeled_ids=missing)
    ds = _dataset(tiny, unlabeled_ids=missing, skip_missing=True)  # left out, and counted
    assert (ds.num_labeled_videos, ds.num_unlabeled_videos, len(ds)) == (7, 1, 7 * 3 + 1)
    with pytest.raises(DataError, match='test_mode dataset.*training dataset only'):
        _dataset(tiny, unlabeled_ids=missing, test_mode=True)
    with pytest.raises(DataError, match='duplicate video ids'):
        _dataset(tiny, unlabeled_ids=_write(tmp_path / 'dup.json', ['vid006', 'vid006']))
    with pytest.raises(ValueError, match='unlabeled_repeat'):
        _dataset(tiny, unlabeled_ids=missing, unlabeled_repeat=0)


def _captioner(in_dim, key, encoder):
    return dict(type='Captioner', feature_key=key,
                visual_encoder=dict(type='FeatureProjector', in_dim=in_dim, embed_dim=16),
                encoder=encoder, head=dict(type='PrefixLMHead', embed_dim=16, depth=1,
                                           num_heads=2),
                tokenizer=dict(type='WordTokenizer', words=['a', 'red', 'ball', 'spins']),
                max_len=5)


def _algo(losses):
    with DefaultScope.overwrite_default_scope('capdistill'):
        algo = MODELS.build(dict(
            type='DistillAlgorithm', allow_random_teacher=True, distill_losses=losses,
            student=_captioner(6, 'feats', dict(type='IdentityEncoder')),
            teacher=_captioner(10, 'teacher_feats', dict(type='TransformerEncoder',
                                                         embed_dim=16, depth=1,
                                                         num_heads=2))))
    return algo.eval()  # no dropout: gradients compare exactly


SEQ = dict(type='SequenceKDLoss', inputs=dict(student='seq_logits', targets='seq_targets'))


def test_caption_terms_ignore_unlabeled_rows_sequence_kd_uses_them():
    torch.manual_seed(0)
    algo = _algo(dict(loss_seq=SEQ, loss_word=dict(type='WordKLLoss', tau=2.0)))
    assert algo.uses_unlabeled and not _algo(dict(loss_word=dict(type='WordKLLoss'))) \
        .uses_unlabeled
    feats = torch.randn(4, 3, 6, requires_grad=True)
    inputs = dict(feats=feats, feats_mask=torch.ones(4, 3, dtype=torch.bool),
                  teacher_feats=torch.randn(4, 3, 10),
                  teacher_feats_mask=torch.ones(4, 3, dtype=torch.bool))
    # real caption tokens and weight 1 on the unlabeled rows too: the flag alone must
    # keep them out (another dataset need not blank their captions)
    tokens = torch.tensor([[1, 4, 5, 6, 2, 0, 0], [1, 3, 4, 2, 0, 0, 0],
                           [1, 7, 6, 2, 0, 0, 0], [1, 5, 5, 5, 5, 2, 0]])
    samples = dict(tokens=tokens, video_id=['v0', 'v1', 'v2', 'v3'],
                   weight=torch.ones(4), labeled=torch.tensor([True, True, False, False]))
    losses = algo.loss(inputs, samples)

    def grad_rows(name):
        g, = torch.autograd.grad(losses[name], feats, retain_graph=True)
        return g.abs().sum((1, 2))

    for name in ('student.loss_caption', 'distill.loss_word'):
        g = grad_rows(name)
        assert (g[:2] > 0).all() and (g[2:] == 0).all(), (name, g)
    g = grad_rows('distill.loss_seq')
    assert (g > 0).all(), g  # sequence KD learns from every video, unlabeled ones too
    # the caption terms are the means over the labeled rows alone: nothing miscounted
    sub = {k: v[:2] for k, v in inputs.items()}
    alone = algo.loss(sub, dict(tokens=tokens[:2], video_id=['v0', 'v1'],
                                weight=torch.ones(2)))
    for name in ('student.loss_caption', 'distill.loss_word'):
        assert torch.allclose(losses[name], alone[name]), name
    # a batch of unlabeled rows only: zero caption loss, finite, sequence KD still there
    none = algo.loss(inputs, dict(samples, labeled=torch.zeros(4, dtype=torch.bool)))
    assert none['student.loss_caption'].item() == 0 and none['distill.loss_word'].item() == 0
    assert none['distill.loss_seq'].item() > 0


def test_captioned_fraction_is_deterministic_by_seed():
    ids = [f'demo{i:05d}' for i in range(300)]
    cap, unl = captioned_split(ids, 0.2, seed=0)
    assert len(cap) == 60 and len(unl) == 240 and sorted(cap + unl) == ids
    assert captioned_split(ids, 0.2, seed=0) == (cap, unl)
    assert set(captioned_split(ids[::-1], 0.2, seed=0)[0]) == set(cap)  # order-free
    assert set(captioned_split(ids, 0.2, seed=1)[0]) != set(cap)
    assert len(captioned_split(ids, 0.5, seed=0)[0]) == 150
    assert captioned_split(ids[:3], 0.01)[0]  # at least one captioned video
    with pytest.raises(ValueError, match='captioned_fraction'):
        captioned_split(ids, 0.0)


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('unl_demo') / 'capdemo')
    return make_demo_dataset(root, seed=2, num_videos=20, verbose=False)


def test_capdemo_writes_the_captioned_fraction_splits(demo):
    with open(demo['split_files']['train']) as f:
        train = json.load(f)
    files = demo['captioned_splits'][0.2]
    assert files == captioned_split_files(demo['root'], 0.2)
    assert [os.path.basename(p) for p in files] == ['capdemo_train-cap20_list.json',
                                                    'capdemo_train-unl80_list.json']
    got = []
    for path in files:
        with open(path) as f:
            got.append(json.load(f))
    assert tuple(got) == captioned_split(train, 0.2, seed=2)
    # a complete build skips everything else and still writes another fraction's files
    again = make_demo_dataset(demo['root'], seed=2, num_videos=20, verbose=False,
                              captioned_fractions=(0.2, 0.5))
    assert again['skipped'] and os.path.isfile(again['captioned_splits'][0.5][1])


CHILD = '''_base_ = ['{kd}/{config}']
_root = '{root}'
_tok = dict(type='WordTokenizer', vocab_file=_root + '/language/vocab-cap20.json',
            build_from=dict(ann_file=_root + '/language/capdemo_caption.json',
                            split_file=_root + '/splits/capdemo_train-cap20_list.json'))
train_dataloader = dict(batch_size=16, dataset=dict(data_root=_root, tokenizer=_tok{train}))
val_dataloader = dict(dataset=dict(data_root=_root, tokenizer=_tok))
test_dataloader = dict(dataset=dict(data_root=_root, tokenizer=_tok))
train_cfg = dict(max_epochs=1, val_interval=2)  # no validation (no Java needed)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
{model}
'''


def _child(tmp_path, demo, config, train='', model=''):
    path = tmp_path / config
    path.write_text(CHILD.format(kd=KD, config=config, root=demo['root'], train=train,
                                 model=model))
    return str(path)


def test_seqkd_trains_on_20_percent_captioned_with_the_rest_unlabeled(demo, tmp_path):
    cache = tmp_path / 'seq.json'
    # one sample per unlabeled video (the config's 5 would only lengthen the test)
    cfg = _child(tmp_path, demo, SEQKD_CFG, train=', unlabeled_repeat=1', model=(
        'model = dict(teacher_ckpt=None, allow_random_teacher=True, student=dict(tokenizer=_tok),'
        f' teacher=dict(tokenizer=_tok), seq_kd=dict(cache_file={str(cache)!r}))'))
    res = run_tool(['tools/train.py', cfg, '--work-dir', str(tmp_path / 'work')])
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / 'work' / 'epoch_1.pth').is_file()
    cap, unl = (json.load(open(p)) for p in demo['captioned_splits'][0.2])
    log = res.stdout + res.stderr
    assert f'{len(cap)} captioned videos ({5 * len(cap)} samples) and {len(unl)} ' \
           f'unlabeled videos ({len(unl)} samples, x1' in log
    # the teacher captioned every training video, the unlabeled ones included
    assert set(json.loads(cache.read_text())['captions']) == set(cap) | set(unl)
    assert 'distill.loss_seq' in log


def test_unlabeled_videos_without_a_teacher_driven_term_stop_the_run(demo, tmp_path):
    cfg = _child(tmp_path, demo, SCRATCH_CFG,
                 train=", unlabeled_ids='splits/capdemo_train-unl80_list.json'",
                 model='model = dict(tokenizer=_tok)')
    res = run_tool_here(['tools/train.py', cfg, '--work-dir', str(tmp_path / 'work')])
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith('error: train_dataloader.dataset has ')
    assert 'no teacher-driven term' in lines[-1] and 'Traceback' not in res.stderr
    assert not (tmp_path / 'work' / 'epoch_1.pth').exists()
