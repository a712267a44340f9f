"""Distillation configs train what they say or stop at build: loss names, the teacher
checkpoint, vocabularies, widths, batch keys, student initialisation."""
import logging
import os

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from safetensors.torch import save_file

from capdistill.models.distillers import DistillConfigError
from capdistill.registry import MODELS
from capdistill.utils import CheckpointError, resolve_checkpoint
from capdistill.utils.requirements import MissingBatchKeyError
from conftest import run_tool, run_tool_here, write_tiny_config

WORDS = ['a', 'red', 'ball', 'spins', 'moves']


def _captioner(in_dim, embed, key, words=WORDS, encoder=None):
    return dict(type='Captioner', feature_key=key,
                visual_encoder=dict(type='FeatureProjector', in_dim=in_dim, embed_dim=embed),
                encoder=encoder or dict(type='IdentityEncoder'),
                head=dict(type='PrefixLMHead', embed_dim=embed, depth=1, num_heads=2),
                tokenizer=dict(type='WordTokenizer', words=words), max_len=5)


STUDENT = _captioner(6, 8, 'feats', encoder=dict(type='HAM', embed_dim=8, num_actions=2,
                                                 num_heads=2))
TEACHER = _captioner(10, 16, 'teacher_feats',
                     encoder=dict(type='TransformerEncoder', embed_dim=16, depth=1, num_heads=2))
# every family of distillation loss at once: word-level, feature-level via connectors,
# concept prediction through the student's word embedding
HIER = dict(
    recorders=dict(s_obj=dict(source='student', module='encoder.objects'),
                   s_act=dict(source='student', module='encoder.actions'),
                   t_tok=dict(source='teacher', module='encoder', output=0)),
    connectors=dict(obj=dict(type='LinearConnector', in_dim=8, out_dim=16),
                    act=dict(type='LinearConnector', in_dim=8, out_dim=16)),
    distill_losses=dict(
        loss_word=dict(type='WordKLLoss', tau=2.0),
        loss_obj=dict(type='ObjectDistillLoss', inputs=dict(student='obj(s_obj)', teacher='t_tok',
                                                            mask='data.feats_mask')),
        loss_act=dict(type='ActionDistillLoss',
                      inputs=dict(student='act(s_act)', teacher='t_tok',
                                  teacher_mask='data.teacher_feats_mask')),
        loss_concept=dict(type='ConceptPredictionLoss',
                          inputs=dict(feats='s_obj', concepts='data.obj_tokens',
                                      embedding='s_word_embed', mask='data.feats_mask'))))


def _build(**kw):
    cfg = dict(type='DistillAlgorithm', student=STUDENT, teacher=TEACHER)
    cfg.update(kw)
    if 'teacher_ckpt' not in kw:
        cfg.setdefault('allow_random_teacher', True)
    with DefaultScope.overwrite_default_scope('capdistill'):
        return MODELS.build(cfg)


def _batch(b=3, t=4, concepts=True):
    g = torch.Generator().manual_seed(0)
    inputs = dict(feats=torch.randn(b, t, 6, generator=g), feats_mask=torch.ones(b, t, dtype=bool),
                  teacher_feats=torch.randn(b, t, 10, generator=g),
                  teacher_feats_mask=torch.ones(b, t, dtype=bool))
    tokens = torch.tensor([[1, 4, 5, 6, 2, 0, 0], [1, 3, 4, 2, 0, 0, 0], [1, 7, 6, 2, 0, 0, 0]])
    samples = dict(tokens=tokens[:b], video_id=[f'v{i}' for i in range(b)])
    if concepts:
        samples['obj_tokens'] = torch.tensor([[6, 0], [6, 5], [8, 0]])[:b]
    return inputs, samples


# -- 1. loss names ------------------------------------------------------------------------
def test_loss_name_without_loss_is_refused_at_build():
    with pytest.raises(DistillConfigError) as info:
        _build(distill_losses=dict(kd=dict(type='WordKLLoss')))
    assert str(info.value) == ("distill loss 'kd': its name must contain 'loss' (mmengine "
                               "back-propagates only such keys); rename it, e.g. loss_kd")


def test_every_distill_loss_enters_the_total_and_reaches_the_student():
    algo = _build(**HIER)
    algo.train()
    losses = algo(*_batch(), mode='loss')
    assert set(losses) == {'student.loss_caption'} | {
        f'distill.{n}' for n in HIER['distill_losses']}
    total, log = algo.parse_losses(losses)  # what mmengine back-propagates
    assert torch.allclose(total, sum(losses.values()))
    params = dict(algo.named_parameters())
    for name in HIER['distill_losses']:
        grads = torch.autograd.grad(losses[f'distill.{name}'], list(params.values()),
                                    retain_graph=True, allow_unused=True)
        moved = [n for n, g in zip(params, grads) if g is not None and g.abs().sum() > 0]
        assert any(n.startswith('student.') for n in moved), name
        if name in ('loss_obj', 'loss_act'):
            assert any(n.startswith(f'connectors.{name[5:]}.') for n in moved), name


# -- 2. random teacher --------------------------------------------------------------------
def test_missing_teacher_checkpoint_is_refused_unless_asked_for():
    with DefaultScope.overwrite_default_scope('capdistill'), \
            pytest.raises(DistillConfigError, match=r'model\.teacher_ckpt is not set.*'
                                                    r'tools/train\.py.*allow_random_teacher'):
        MODELS.build(dict(type='DistillAlgorithm', student=STUDENT, teacher=TEACHER,
                          distill_losses=dict(loss_word=dict(type='WordKLLoss'))))
    assert _build(distill_losses=dict(loss_word=dict(type='WordKLLoss'))) is not None


def test_missing_teacher_file_names_the_command_that_trains_it(tmp_path):
    spec = tmp_path / 'work_dirs' / 'baseline_teacher_grid16_1xb64-8e_capdemo' / 'epoch_8.pth'
    with pytest.raises(FileNotFoundError) as info:
        _build(teacher_ckpt=str(spec))
    msg = str(info.value)
    assert '\n' not in msg and 'model.teacher_ckpt' in msg
    assert ('python tools/train.py configs/capdemo/baseline_teacher_grid16_1xb64-8e_capdemo.py'
            in msg)


# -- 3. teacher paths ---------------------------------------------------------------------
def _save(path, model=None, **extra):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    state = model.state_dict() if model is not None else {}
    torch.save(dict(state_dict=state, **extra), path)
    return str(path)


def test_resolve_checkpoint_forms(tmp_path):
    run = tmp_path / 'work_dirs' / 'run'
    for n in (2, 9, 12):
        _save(run / f'epoch_{n}.pth')
    _save(run / 'best_CIDEr_epoch_9.pth')
    _save(run / 'old' / 'best_CIDEr_epoch_3.pth')
    assert resolve_checkpoint(str(run / 'epoch_2.pth')) == str(run / 'epoch_2.pth')
    assert resolve_checkpoint(str(run / 'epoch_*.pth')).endswith('epoch_12.pth')  # not 9
    assert resolve_checkpoint(str(run / 'best')) == str(run / 'best_CIDEr_epoch_9.pth')
    assert resolve_checkpoint(str(run / 'latest')).endswith('epoch_12.pth')
    (run / 'last_checkpoint').write_text(str(run / 'epoch_9.pth'))  # mmengine's pointer
    assert resolve_checkpoint(str(run / 'latest')) == str(run / 'epoch_9.pth')
    _save(run / 'best_Bleu_4_epoch_2.pth')
    with pytest.raises(FileNotFoundError, match='ambiguous.*best_Bleu_4_epoch_2.pth.*'
                                                'best_CIDEr_epoch_9.pth'):
        resolve_checkpoint(str(run / 'best'), key='model.teacher_ckpt')
    with pytest.raises(FileNotFoundError, match=r'no file matches .*model\.x'):
        resolve_checkpoint(str(run / 'iter_*.pth'), key='model.x')
    (tmp_path / 'empty').mkdir()
    for last in ('best', 'latest'):
        with pytest.raises(FileNotFoundError, match=f'holds no {last} checkpoint'):
            resolve_checkpoint(str(tmp_path / 'empty' / last))


def test_tools_take_a_checkpoint_named_as_a_config_names_one(tmp_path):
    """tools/test.py, caption_video.py, export_student.py and deploy.py check their CONFIG
    and CHECKPOINT through ``tool_inputs``: a file, or a run's best/latest/glob."""
    from capdistill.utils.cli import tool_inputs
    run = tmp_path / 'work_dirs' / 'run'
    _save(run / 'epoch_3.pth')
    _save(run / 'best_CIDEr_epoch_2.pth')
    cfg = tmp_path / 'cfg.py'
    cfg.write_text('x = 1\n')
    best = str(run / 'best_CIDEr_epoch_2.pth')
    assert tool_inputs(str(cfg), str(run / 'best')) == (str(cfg), best)
    assert tool_inputs(str(cfg), str(run / 'latest'))[1] == str(run / 'epoch_3.pth')
    assert tool_inputs(str(cfg), str(run / 'epoch_*.pth'))[1] == str(run / 'epoch_3.pth')
    assert tool_inputs(str(cfg), str(run / 'epoch_3.pth'))[1] == str(run / 'epoch_3.pth')
    with pytest.raises(FileNotFoundError, match='^Checkpoint file not found: .*epoch_4.pth$'):
        tool_inputs(str(cfg), str(run / 'epoch_4.pth'))
    with pytest.raises(FileNotFoundError, match='holds no best checkpoint'):
        tool_inputs(str(cfg), str(tmp_path / 'best'))
    with pytest.raises(FileNotFoundError, match='^Config file not found: '):
        tool_inputs(str(tmp_path / 'nope.py'), str(run / 'epoch_3.pth'))
    assert tool_inputs(str(run), None, config_folder=True) == (str(run), None)


def test_teacher_from_a_glob_loads_the_highest_epoch_and_logs_it(tmp_path):
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    MMLogger.get_current_instance().addHandler(handler)
    with DefaultScope.overwrite_default_scope('capdistill'):
        teachers = [MODELS.build(TEACHER) for _ in range(2)]
    run = tmp_path / 'work_dirs' / 'teacher'
    _save(run / 'best_CIDEr_epoch_2.pth', teachers[0])
    _save(run / 'best_CIDEr_epoch_10.pth', teachers[1])
    algo = _build(teacher_ckpt=str(run / 'best_CIDEr_epoch_*.pth'),
                  distill_losses=dict(loss_word=dict(type='WordKLLoss')))
    for k, v in teachers[1].state_dict().items():
        assert torch.equal(algo.teacher.state_dict()[k], v)
    MMLogger.get_current_instance().removeHandler(handler)
    assert records.count(f'teacher checkpoint: {run / "best_CIDEr_epoch_10.pth"}') == 1


# -- 5. terms that cannot run ---------------------------------------------------------------
def test_loss_input_the_batch_never_carries_stops_the_first_step():
    algo = _build(**HIER)
    assert algo.required_batch_keys()['obj_tokens'] == "distill loss 'loss_concept'"
    with pytest.raises(MissingBatchKeyError, match=r"distill loss 'loss_concept' needs the batch "
                                                   r"key 'obj_tokens'.*dataset\.concepts="):
        algo(*_batch(concepts=False), mode='loss')


def test_quality_weighted_term_requires_graded_data():
    algo = _build(distill_losses=dict(loss_qw=dict(
        type='QualityWeightedCaptionLoss',
        inputs=dict(logits='s_logits', targets='targets', weight='weight'))))
    assert 'grade' in algo.required_batch_keys()


# -- 6. vocabulary identity -----------------------------------------------------------------
def test_token_level_loss_needs_the_same_vocabulary_in_the_same_order():
    shuffled = dict(TEACHER, tokenizer=dict(type='WordTokenizer', words=WORDS[::-1]))
    with pytest.raises(DistillConfigError, match=r"distill loss 'loss_word' compares teacher and "
                                                 r'student token by token.*fingerprint'):
        _build(teacher=shuffled, distill_losses=dict(loss_word=dict(type='WordKLLoss')))
    with pytest.raises(DistillConfigError, match="'loss_emb'"):
        _build(teacher=shuffled, distill_losses=dict(loss_emb=dict(
            type='FeatureMSELoss', inputs=dict(student='s_word_embed', teacher='t_word_embed'))),
            connectors={})
    # a feature-level loss does not care about the vocabulary
    feat = dict(recorders=dict(t=dict(source='teacher', module='encoder', output=0),
                               s=dict(source='student', module='visual_encoder', output=0)),
                connectors=dict(up=dict(type='LinearConnector', in_dim=8, out_dim=16)),
                distill_losses=dict(loss_feat=dict(type='FeatureMSELoss',
                                                   inputs=dict(student='up(s)', teacher='t'))))
    assert _build(teacher=shuffled, **feat) is not None


# -- 7. widths ------------------------------------------------------------------------------
def test_width_mismatch_is_found_at_build_with_the_loss_and_both_shapes():
    bad_conn = dict(HIER, connectors=dict(HIER['connectors'],
                                          obj=dict(type='LinearConnector', in_dim=8, out_dim=12)))
    with pytest.raises(DistillConfigError) as info:
        _build(**bad_conn)
    msg = str(info.value)
    assert "distill loss 'loss_obj'" in msg and '(2, 4, 12)' in msg and '(2, 4, 16)' in msg
    wrong_in = dict(HIER, connectors=dict(HIER['connectors'],
                                          act=dict(type='LinearConnector', in_dim=6, out_dim=16)))
    with pytest.raises(DistillConfigError, match=r"distill loss 'loss_act': connector 'act' "
                                                 r"cannot take .* shape \(2, 2, 8\)"):
        _build(**wrong_in)
    # without the dry forward the same config builds (and would fail at step 1)
    assert _build(dry_run=False, **bad_conn) is not None


# -- 8. student initialisation ---------------------------------------------------------------
def test_student_ckpt_from_captioner_distillation_or_export(tmp_path):
    with DefaultScope.overwrite_default_scope('capdistill'):
        source = MODELS.build(STUDENT)
    run = _save(tmp_path / 'captioner' / 'epoch_3.pth', source)
    export = tmp_path / 'student.safetensors'
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(export))
    distilled = tmp_path / 'kd' / 'epoch_1.pth'
    for spec in (str(tmp_path / 'captioner' / 'latest'), str(export)):
        algo = _build(student_ckpt=spec, distill_losses=dict(loss_word=dict(type='WordKLLoss')))
        for k, v in source.state_dict().items():
            assert torch.equal(algo.student.state_dict()[k], v), (spec, k)
    _save(distilled, algo)  # student.* + connectors.*
    again = _build(student_ckpt=str(distilled))
    for k, v in source.state_dict().items():
        assert torch.equal(again.student.state_dict()[k], v)
    with pytest.raises(CheckpointError, match=r'model\.student_ckpt .* does not match'):
        _build(student_ckpt=_save(tmp_path / 'teacher.pth', MODELS.build(TEACHER)))
    # load_from (the Runner's load_state_dict) with a captioner checkpoint is refused
    fresh = _build()
    with pytest.raises(CheckpointError, match=r'model\.student_ckpt=<that file>'):
        fresh.load_state_dict(torch.load(run, weights_only=False)['state_dict'], strict=False)
    fresh.load_state_dict(algo.state_dict())  # a distillation checkpoint loads


def _runner(tmp_path, root, model, **extra):
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(write_tiny_config(tmp_path / 'cfg.py', root, model=model, **extra))
    cfg.work_dir = str(tmp_path / 'work')
    return Runner.from_cfg(cfg)


def test_quality_weighted_loss_without_grades_stops_before_the_first_step(tmp_path, tiny_root):
    from capdistill.engine.hooks import DataRequirementsHook
    model = "dict(_student, caption_loss=dict(type='QualityWeightedCaptionLoss'))"
    runner = _runner(tmp_path, tiny_root, model)
    with pytest.raises(MissingBatchKeyError, match=r"QualityWeightedCaptionLoss \(caption_loss\) "
                                                   r"needs the batch key 'grade'.*dataset\.grade="):
        runner.train()
    assert runner.iter == 0
    runner.train_dataloader.dataset.grade = 'tfidf'  # what the config option sets
    DataRequirementsHook().before_train(runner)  # passes


def test_missing_concepts_stop_a_distillation_run_in_one_line(tmp_path, tiny_root):
    model = ("dict(type='DistillAlgorithm', student=dict(_student, encoder=dict(type='HAM', "
             "embed_dim=32, num_actions=2, num_heads=2)), teacher=_teacher, "
             "allow_random_teacher=True, recorders=dict(s_obj=dict(source='student', "
             "module='encoder.objects')), distill_losses=dict(loss_concept=dict("
             "type='ConceptPredictionLoss', inputs=dict(feats='s_obj', "
             "concepts='data.obj_tokens', embedding='s_word_embed'))))")
    cfg = write_tiny_config(tmp_path / 'kd.py', tiny_root, model=model)
    res = run_tool_here(['tools/train.py', cfg, '--work-dir', str(tmp_path / 'work')])
    assert res.returncode == 1, res.stderr[-3000:]
    assert 'Traceback' not in res.stderr and 'Epoch(train)' not in res.stdout + res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: distill loss 'loss_concept' needs the batch key 'obj_tokens'")
    assert 'train_dataloader.dataset.concepts=dict(' in last


def _shipped_distillation_configs():
    import glob
    from conftest import REPO
    paths = []
    for pattern in ('configs/kd/*_capdemo.py', 'configs/capdemo/*.py', 'configs/sftcap/*capdemo.py',
                    'projects/example_loss/configs/*.py'):
        paths += sorted(glob.glob(os.path.join(REPO, pattern)))
    return [p for p in paths if not os.path.basename(p).startswith('_')
            and 'DistillAlgorithm' in open(p).read() + _bases_text(p)]


def _bases_text(path):
    from mmengine.config import Config
    try:
        return str(Config.fromfile(path).model.get('type'))
    except Exception:  # a config that needs files absent here is not a distillation one
        return ''


@pytest.mark.parametrize('path', _shipped_distillation_configs(), ids=os.path.basename)
def test_every_shipped_distillation_loss_trains_the_student(path, tiny_root):
    """Each distillation term of each shipped config is in the total and moves the student
    (or its connectors): nothing a config names is logged without being trained."""
    from mmengine.config import Config
    from mmengine.utils import import_modules_from_strings
    cfg = Config.fromfile(path)
    if 'custom_imports' in cfg:
        import_modules_from_strings(**cfg.custom_imports)
    tok = dict(type='WordTokenizer', vocab_file=f'{tiny_root}/language/vocab.json',
               build_from=dict(ann_file=f'{tiny_root}/language/tiny_caption.json',
                               split_file=f'{tiny_root}/splits/tiny_train_list.json'))
    model = cfg.model
    model.student.tokenizer = tok
    for teacher in ([model.teacher] if model.get('teacher') else model.teachers.values()):
        if model.get('teachers'):  # several teachers: dict(model=..., ckpt=...) each
            teacher.ckpt, teacher = None, teacher.model
        teacher.tokenizer = tok
    model.teacher_ckpt, model.allow_random_teacher = None, True
    model.teacher_cache = None  # a shipped cache folder holds the real teacher's outputs
    if model.get('seq_kd'):  # nor may this random teacher's captions reach the shipped file
        model.seq_kd.cache_file = None
    with DefaultScope.overwrite_default_scope('capdistill'):
        algo = MODELS.build(model)
    algo.train()
    inputs, samples = algo._dummy_batch()
    losses = algo(inputs, samples, mode='loss')
    # (a term switched off with None is not built)
    names = [f'distill.{n}' for n, c in cfg.model.distill_losses.items() if c is not None]
    assert names and set(names) <= set(losses)
    total, _ = algo.parse_losses(losses)
    assert torch.allclose(total, sum(losses.values()))
    params = [p for p in algo.parameters() if p.requires_grad]
    for name in names:
        grads = torch.autograd.grad(losses[name], params, retain_graph=True, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name


def test_model_and_dataset_tokenizers_must_match(tmp_path, tiny_root):
    """A model reading the dataset's word ids with CLIP's BPE would train on wrong words."""
    model = "dict(_teacher, tokenizer=dict(type='ClipBPETokenizer'))"
    cfg = write_tiny_config(tmp_path / 'bpe.py', tiny_root, model=model)
    res = run_tool_here(['tools/train.py', cfg, '--work-dir', str(tmp_path / 'work')])
    assert res.returncode == 1, res.stderr[-3000:]
    assert 'Traceback' not in res.stderr and 'Epoch(train)' not in res.stdout + res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith('error: the training dataset tokenizes captions with WordTokenizer')
    assert "give train_dataloader.dataset.tokenizer the model's tokenizer config" in last
