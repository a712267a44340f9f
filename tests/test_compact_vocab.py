"""A compact student vocabulary: training-caption tokens of CLIP's BPE, the teacher's
distributions gathered onto them, and exports that carry it."""
import json
import math
import os
import shutil

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from capdistill.apis.export import export_student, load_exported_student
from capdistill.datasets import ClipBPETokenizer, DataError
from capdistill.datasets.tokenizers import CompactTokenizer
from capdistill.models.distillers import DistillConfigError
from capdistill.models.distillers.vocab_map import gather_logits
from capdistill.registry import MODELS, TOKENIZERS
from conftest import write_tiny_config

TRAIN = ['a man is slicing an onion', 'a man slices onions', 'a woman is singing']
UNSEEN = ['A zebra skateboards past the café!! wow!?', 'x!y 12.5 kg of "rice" 😀', '']


@pytest.fixture(scope='module')
def full():
    return ClipBPETokenizer()


def _captions(tmp_path, sentences):
    ann = tmp_path / 'cap.json'
    ann.write_text(json.dumps(dict(sentences=[dict(video_id=f'v{i}', caption=c)
                                              for i, c in enumerate(sentences)])))
    split = tmp_path / 'train.json'
    split.write_text(json.dumps([f'v{i}' for i in range(len(sentences))]))
    return dict(ann_file=str(ann), split_file=str(split))


def test_round_trip_equals_the_full_tokenizers_text(tmp_path, full):
    build_from = _captions(tmp_path, TRAIN)
    vocab = str(tmp_path / 'data' / 'compact_vocab.json')
    tok = CompactTokenizer(vocab_file=vocab, build_from=build_from)
    assert os.path.isfile(vocab + '.meta.json')
    # specials first, then the captions' tokens and the byte-level spelling tokens
    assert tok.base_ids[:3] == [full.pad_id, full.bos_id, full.eos_id]
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    caption_ids = {i for c in TRAIN for i in full.encode(c)}
    assert caption_ids <= set(tok.base_ids) and tok.vocab_size < 700 < full.vocab_size
    for text in TRAIN + UNSEEN:
        ids = tok.encode_padded(text, 60)
        assert ids.max() < tok.vocab_size
        assert tok.decode(ids) == full.decode(full.encode_padded(text, 60)), text
    # a training caption's tokens map one to one, unseen words are spelled with bytes
    assert len(tok.encode(TRAIN[0])) == len(full.encode(TRAIN[0]))
    assert len(tok.encode('zebra')) > len(full.encode('zebra'))
    # built once: a later run reads the file; the same tokens in the same order
    again = CompactTokenizer(vocab_file=vocab, build_from=build_from)
    assert again.base_ids == tok.base_ids and again.fingerprint() == tok.fingerprint()
    assert TOKENIZERS.build(tok.standalone_config()).fingerprint() == tok.fingerprint()
    # rewritten annotations: the old vocabulary is refused, not reused
    with open(build_from['ann_file']) as f:
        text = f.read()
    with open(build_from['ann_file'], 'w') as f:
        f.write(text.replace('onion', 'zebra'))
    with pytest.raises(DataError, match='built from another version of .*delete it'):
        CompactTokenizer(vocab_file=vocab, build_from=build_from)
    with pytest.raises(DataError, match='min_count=1 \\(config: 2\\)'):
        CompactTokenizer(vocab_file=vocab, build_from=build_from, min_count=2)


def test_gathered_teacher_distribution_is_the_renormalised_full_one():
    # teacher probabilities 1/10, 2/10, 3/10, 4/10 over 4 tokens; the student has ids 3, 1
    t_logits = torch.log(torch.tensor([[1., 2., 3., 4.]]))
    probs = gather_logits(t_logits, torch.tensor([3, 1])).exp()
    assert torch.allclose(probs, torch.tensor([[2 / 3, 1 / 3]]), atol=1e-6)  # 4/6, 2/6
    # and in general: a proper distribution equal to p_full[index] / p_full[index].sum()
    g = torch.Generator().manual_seed(0)
    t_logits = torch.randn(2, 5, 50, generator=g) * 3
    index = torch.tensor([0, 7, 3, 49, 12, 30])
    gathered = gather_logits(t_logits, index)
    full = t_logits.softmax(-1)[..., index]
    assert torch.allclose(gathered.exp().sum(-1), torch.ones(2, 5), atol=1e-6)
    assert torch.allclose(gathered.exp(), full / full.sum(-1, keepdim=True), atol=1e-6)
    # golden: log-probabilities of [0, ln 2, ln 3] gathered at (2, 0): ln(3/4), ln(1/4)
    golden = gather_logits(torch.log(torch.tensor([1., 2., 3.])), torch.tensor([2, 0]))
    assert golden.tolist() == pytest.approx([math.log(0.75), math.log(0.25)], abs=1e-6)


def _captioner(tokenizer, key, in_dim, clip=None):
    head = dict(type='PrefixLMHead', embed_dim=16, depth=1, num_heads=2)
    if clip:
        head['clip_embedding'] = clip
    return dict(type='Captioner', feature_key=key, tokenizer=tokenizer, max_len=6,
                visual_encoder=dict(type='FeatureProjector', in_dim=in_dim, embed_dim=16),
                encoder=dict(type='IdentityEncoder'), head=head)


def _algorithm(student_tok, teacher_tok, clip=None, **kw):
    cfg = dict(type='DistillAlgorithm', allow_random_teacher=True,
               student=_captioner(student_tok, 'feats', 6, clip),
               teacher=_captioner(teacher_tok, 'teacher_feats', 10),
               distill_losses=dict(loss_word=dict(type='WordKLLoss', tau=2.0)))
    cfg.update(kw)
    with DefaultScope.overwrite_default_scope('capdistill'):
        return MODELS.build(cfg)


def test_compact_student_learns_from_the_full_teacher_and_missing_tokens_stop_the_build(
        tmp_path, full):
    ids = CompactTokenizer.select(full, TRAIN)
    compact = dict(type='CompactTokenizer', ids=ids)
    # a CLIP checkpoint's token embedding initialises the compact head with its rows
    clip_weight = torch.randn(full.vocab_size, 16)
    clip = str(tmp_path / 'clip.pt')
    torch.save(dict(state_dict={'token_embedding.weight': clip_weight}), clip)
    algo = _algorithm(compact, dict(type='ClipBPETokenizer'), clip=clip)
    assert algo.student.head.word_embed.weight.shape == (len(ids), 16)
    assert torch.equal(algo.student.head.word_embed.weight, clip_weight[ids])
    # the teacher reads the student's captions in its own ids and its logits come back
    # over the student's tokens: log-probabilities equal to the renormalised full ones
    tok = algo.student.tokenizer
    tokens = torch.tensor([[tok.bos_id] + tok.encode(TRAIN[0]) + [tok.eos_id]])
    inputs = dict(feats=torch.randn(1, 3, 6), feats_mask=torch.ones(1, 3, dtype=torch.bool),
                  teacher_feats=torch.randn(1, 3, 10),
                  teacher_feats_mask=torch.ones(1, 3, dtype=torch.bool))
    t_logits, _ = algo._run(algo.teacher, 'teacher', inputs, tokens, False)
    direct = algo.teacher.caption_logits(inputs, torch.tensor(ids)[tokens])
    assert t_logits.shape[-1] == len(ids)
    want = direct.softmax(-1)[..., ids]
    assert torch.allclose(t_logits.exp(), want / want.sum(-1, keepdim=True), atol=1e-5)
    losses = algo(inputs, dict(tokens=tokens, video_id=['v0']), mode='loss')
    assert torch.isfinite(losses['distill.loss_word'])
    # the teacher cache keeps the gathered distributions: a cached step scores the same
    cached = _algorithm(compact, dict(type='ClipBPETokenizer'),
                        teacher_cache=dict(cache_dir=str(tmp_path / 'cache'), topk=None))
    cached.eval()
    samples = dict(tokens=tokens, video_id=['v0'])
    first = cached(inputs, samples, mode='loss')['distill.loss_word']
    again = cached(inputs, samples, mode='loss')['distill.loss_word']
    assert cached.teacher_cache.hits == 1 and torch.allclose(first, again, atol=1e-6)
    # on-policy rows (student samples) are scored by the teacher the same way
    onpolicy = _algorithm(compact, dict(type='ClipBPETokenizer'),
                          onpolicy=dict(lmbda=1.0, seed=3), distill_losses=dict(loss_op=dict(
                              type='ForwardKLDivergence', inputs=dict(
                                  student='op_s_logits', teacher='op_t_logits', mask='op_mask'))))
    op_t = onpolicy._op_teacher.caption_logits(inputs, tokens)
    want = onpolicy.teacher.caption_logits(inputs, torch.tensor(ids)[tokens]).softmax(-1)[..., ids]
    assert torch.allclose(op_t.exp(), want / want.sum(-1, keepdim=True), atol=1e-5)
    loss = onpolicy(inputs, dict(tokens=tokens, video_id=['v0']), mode='loss')['distill.loss_op']
    assert torch.isfinite(loss) and loss > 0
    # a student token the teacher lacks stops the build, naming it (here a teacher with
    # a compact vocabulary of its own, over fewer captions and no byte tokens)
    small = dict(type='CompactTokenizer', byte_fallback=False,
                 ids=CompactTokenizer.select(full, TRAIN[:2], byte_fallback=False))
    plain = dict(type='CompactTokenizer', byte_fallback=False,
                 ids=CompactTokenizer.select(full, TRAIN, byte_fallback=False))
    with pytest.raises(DistillConfigError) as info:
        _algorithm(plain, small)
    msg = str(info.value)
    lacking = sorted(set(full.encode(TRAIN[2]))
                     - {i for c in TRAIN[:2] for i in full.encode(c)})
    named = ', '.join(repr(full.tokens()[i]) for i in lacking)
    assert msg == (f'model.student (compact vocabulary): {len(lacking)} student token(s) are '
                   f"not in the teacher's vocabulary: {named}; build the student's compact "
                   "vocabulary over the teacher's tokenizer (CompactTokenizer base=the "
                   "teacher's tokenizer config).")
    assert "'woman</w>'" in named


COMPACT = '''
tokenizer = dict(type='CompactTokenizer', vocab_file='{root}/language/compact_vocab.json',
                 build_from=dict(ann_file='{root}/language/tiny_caption.json',
                                 split_file='{root}/splits/tiny_train_list.json'))
'''
MODEL = ("dict(type='DistillAlgorithm', allow_random_teacher=True, student=_student, "
         "teacher=dict(_teacher, tokenizer=dict(type='ClipBPETokenizer')), "
         "distill_losses=dict(loss_word=dict(type='WordKLLoss', tau=2.0)))")


def test_tiny_distillation_with_a_compact_student_trains_and_exports(
        tmp_path, tiny_root, monkeypatch):
    # short relative paths: mmengine pretty-prints the config (yapf) at build and at
    # every checkpoint, and long absolute paths make that take seconds each time
    monkeypatch.chdir(tmp_path)
    root = 'data'
    shutil.copytree(tiny_root, root)
    path = write_tiny_config(tmp_path / 'compact.py', root, model=MODEL)
    with open(path) as f:
        text = f.read()
    start = text.index("tokenizer = dict(type='WordTokenizer'")
    end = text.index('pipeline = ')
    with open(path, 'w') as f:
        f.write(text[:start] + COMPACT.format(root=root).lstrip() + text[end:])
    cfg = Config.fromfile(path)
    cfg.work_dir = 'work'
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=1)
    runner = Runner.from_cfg(cfg)
    student = runner.model.student
    assert student.tokenizer.compact and student.head.word_embed.num_embeddings < 700
    before = student.head.word_embed.weight.detach().clone()
    runner.train()
    assert not torch.equal(before, student.head.word_embed.weight.detach())
    assert os.path.isfile(os.path.join(root, 'language', 'compact_vocab.json.meta.json'))
    scalars = [json.loads(line) for line in open(os.path.join(
        runner.log_dir, 'vis_data', 'scalars.json'))]
    kd = [s['distill.loss_word'] for s in scalars if 'distill.loss_word' in s]
    assert kd and all(math.isfinite(v) and v > 0 for v in kd)
    # the export carries the compact vocabulary: it captions with no data folder at all
    student.eval()
    batch = runner.test_dataloader.dataset[0]
    ckpt = os.path.join(cfg.work_dir, 'epoch_1.pth')
    _, js = export_student(path, ckpt, str(tmp_path / 'export'))
    meta = json.load(open(js))
    assert meta['model']['tokenizer']['type'] == 'CompactTokenizer'
    assert meta['model']['tokenizer']['ids'] == student.tokenizer.base_ids
    assert meta['params'] == sum(p.numel() for p in student.parameters())
    shutil.rmtree(root)
    model = load_exported_student(str(tmp_path / 'export'))
    inputs = {k: v[None] for k, v in batch['inputs'].items()}
    with torch.no_grad():
        want = student.predict(inputs)[0]['pred_caption']
        got = model.predict(inputs)[0]['pred_caption']
    assert got == want and model.tokenizer.fingerprint() == student.tokenizer.fingerprint()
