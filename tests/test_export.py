"""Student export: safetensors + json, loaded without unpickling, same captions."""
import json
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from safetensors.torch import load_file

from capdistill.apis.export import export_student, load_exported_student
from capdistill.apis.inference import init_captioner
from capdistill.registry import MODELS
from conftest import run_tool, run_tool_here, write_tiny_config

DISTILL = ("dict(type='DistillAlgorithm', student=_student, teacher=_teacher, "
           "allow_random_teacher=True, "
           "recorders=dict(s=dict(source='student', module='visual_encoder', output=0), "
           "t=dict(source='teacher', module='encoder', output=0)), "
           "connectors=dict(c=dict(type='LinearConnector', in_dim=32, out_dim=32)), "
           "distill_losses=dict(loss_kd=dict(type='WordKLLoss'), loss_f=dict(type='FeatureMSELoss', "
           "inputs=dict(student='c(s)', teacher='t'))))")


def _batch(n=3, t=4):
    g = torch.Generator().manual_seed(1)
    return dict(feats=torch.randn(n, t, 24, generator=g),
                feats_mask=torch.ones(n, t, dtype=torch.bool))


def _trained_like(model):
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture
def distill_run(tmp_path, tiny_root):
    cfg_path = write_tiny_config(tmp_path / 'kd.py', tiny_root, model=DISTILL)
    cfg = Config.fromfile(cfg_path)
    with DefaultScope.overwrite_default_scope('capdistill'):
        algo = _trained_like(MODELS.build(cfg.model))
    ckpt = tmp_path / 'epoch_1.pth'
    torch.save(dict(state_dict=algo.state_dict(), meta=dict()), ckpt)
    return cfg_path, str(ckpt), algo


def test_export_tool_writes_student_only_and_loads_without_unpickling(
        distill_run, tmp_path, monkeypatch):
    cfg_path, ckpt, algo = distill_run
    out = tmp_path / 'export'
    proc = run_tool(['tools/export_student.py', cfg_path, ckpt, '--out', str(out),
                     '--name', 'tiny_student'])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(os.listdir(out)) == ['tiny_student.json', 'tiny_student.safetensors']
    weights = load_file(str(out / 'tiny_student.safetensors'))
    assert weights.keys() == algo.student.state_dict().keys()
    assert not any(k.startswith(('teacher', 'connectors', 'student.')) for k in weights)
    meta = json.load(open(out / 'tiny_student.json'))
    assert meta['model']['type'] == 'Captioner'
    assert (meta['version'], meta['feature_key'], meta['feature_dim'], meta['num_frames']) == (
        2, 'feats', 24, 4)
    assert meta['decode']['strategy'] == 'greedy' and meta['decode']['max_len'] == 6
    # its features sit in visual/grid8/ but are 24-d: no encoder is claimed, and it says so
    assert meta['frame_encoder'] is None and 'no frame encoder recorded' in proc.stderr
    assert 'words' in meta['model']['tokenizer'] and 'vocab_file' not in meta['model']['tokenizer']

    def no_unpickling(*args, **kwargs):
        raise AssertionError('torch.load called while loading an export')

    monkeypatch.setattr(torch, 'load', no_unpickling)
    expected = algo.student.generate(_batch())
    for loaded in (load_exported_student(str(out)),
                   load_exported_student(str(out / 'tiny_student.json')),
                   init_captioner(None, str(out / 'tiny_student.safetensors')),
                   MODELS.build(dict(type='ExportedStudent', path=str(out)))):
        assert not loaded.training
        assert torch.equal(loaded.generate(_batch()), expected)
        caps = loaded.predict(_batch())
        assert [c['pred_caption'] for c in caps] == [
            algo.student.tokenizer.decode(r) for r in expected.tolist()]


def test_sftcap_exports_its_student_path(tmp_path):
    tok = dict(type='WordTokenizer', words=['a', 'red', 'ball', 'spins'])
    cfg = dict(type='SFTCap', feature_key='feats', tokenizer=tok, max_len=5,
               visual_encoder=dict(type='FeatureProjector', in_dim=24, embed_dim=16),
               teacher_encoder=dict(type='TransformerEncoder', embed_dim=16, depth=1,
                                    num_heads=2),
               encoder=dict(type='HAM', embed_dim=16, num_actions=2, num_heads=2),
               head=dict(type='PrefixLMHead', embed_dim=16, depth=1, num_heads=2))
    with DefaultScope.overwrite_default_scope('capdistill'):
        model = _trained_like(MODELS.build(cfg))
    ckpt = tmp_path / 'sftcap.pth'
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    st, js = export_student(Config(dict(model=cfg)), str(ckpt), str(tmp_path / 'out'), 'sft')
    assert not any(k.startswith('teacher_encoder') for k in load_file(st))
    loaded = load_exported_student(st)
    assert type(loaded).__name__ == 'Captioner'
    assert torch.equal(loaded.generate(_batch()), model.generate(_batch()))


def test_missing_export_file_is_a_clear_error(tmp_path):
    (tmp_path / 'x.safetensors').write_bytes(b'')
    with pytest.raises(Exception, match='model config not found'):
        load_exported_student(str(tmp_path / 'x.safetensors'))


def test_test_tool_scores_an_exported_student_like_its_checkpoint(distill_run, tmp_path):
    cfg_path, ckpt, _ = distill_run
    out = tmp_path / 'export'
    assert run_tool(['tools/export_student.py', cfg_path, ckpt, '--out', str(out),
                     '--name', 's']).returncode == 0
    scores = []
    for weights in (ckpt, str(out / 's.safetensors')):
        preds = tmp_path / f'{len(scores)}.json'
        run = run_tool_here if weights == ckpt else run_tool  # the export in a real process
        proc = run(['tools/test.py', cfg_path, weights, '--work-dir', str(tmp_path / 'w'),
                    '--out', str(preds)])
        assert proc.returncode == 0, proc.stderr[-2000:]
        scores.append(json.load(open(preds)))
    assert scores[0]['predictions'] == scores[1]['predictions']
    assert scores[0]['aggregate'] == scores[1]['aggregate']


@pytest.mark.java
def test_test_tool_decodes_an_export_as_the_students_cfg_options_say(distill_run, tmp_path):
    """model.student.decode.* of a distillation config reach the exported student as they
    reach the checkpoint's student; other model options are refused for the export."""
    cfg_path, ckpt, _ = distill_run
    out = tmp_path / 'export'
    assert run_tool(['tools/export_student.py', cfg_path, ckpt, '--out', str(out),
                     '--name', 's']).returncode == 0
    beam = ['model.student.decode.strategy=beam', 'model.student.decode.beam_size=3']
    preds = {}
    for weights in (ckpt, str(out / 's.safetensors')):
        for options in ([], beam):
            path = tmp_path / f'{len(preds)}.json'
            proc = run_tool_here(['tools/test.py', cfg_path, weights, '--work-dir',
                                  str(tmp_path / 'w'), '--out', str(path),
                                  *(['--cfg-options', *options] if options else [])])
            assert proc.returncode == 0, proc.stderr[-2000:]
            preds[weights, bool(options)] = json.load(open(path))['predictions']
    assert preds[ckpt, True] == preds[str(out / 's.safetensors'), True]
    assert preds[ckpt, False] == preds[str(out / 's.safetensors'), False]
    assert preds[ckpt, True] != preds[ckpt, False]  # beam 3 changed some caption
    proc = run_tool_here(['tools/test.py', cfg_path, str(out / 's.safetensors'),
                          '--work-dir', str(tmp_path / 'w'),
                          '--cfg-options', 'model.student.max_len=3'])
    assert proc.returncode == 1 and 'only model.student.decode.* options apply' in proc.stderr
    proc = run_tool_here(['tools/test.py', cfg_path, str(out / 's.safetensors'),
                          '--work-dir', str(tmp_path / 'w'),
                          '--cfg-options', 'model.student.decode.beam_size=0'])
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert 'decoding setting model.student.decode.beam_size=0' in proc.stderr


def test_export_tool_takes_config_then_checkpoint(distill_run, tmp_path):
    cfg_path, ckpt, _ = distill_run
    for args, expected in (([ckpt, cfg_path], 'wrong order: expected CONFIG CHECKPOINT'),
                           ([ckpt, ckpt], 'expected CONFIG (a .py config) first')):
        proc = run_tool_here(['tools/export_student.py', *args, '--out', str(tmp_path / 'x')])
        assert proc.returncode == 1, proc.stderr[-2000:]
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('error: ') and expected in lines[0], lines
        assert not (tmp_path / 'x').exists()
    # an encoder that cannot give the student's features is refused before anything is written
    from capdistill.utils import CheckpointError
    with pytest.raises(CheckpointError, match='gives 192-d features, but the student reads 24-d'):
        export_student(cfg_path, ckpt, str(tmp_path / 'x'),
                       frame_encoder=dict(type='PixelGridEncoder', grid=8))
    assert not (tmp_path / 'x').exists()


def test_frame_encoder_from_the_feature_folder():
    from capdistill.apis.export import infer_frame_encoder
    data = dict(test_dataloader=dict(dataset=dict(feature_dirs=dict(
        feats='visual/clip_b32/frame_feature', teacher_feats='visual/clip_l14/frame_feature'))))
    cfg = Config(data)
    assert infer_frame_encoder(cfg, 'feats')['model_name'] == 'ViT-B-32'
    assert infer_frame_encoder(cfg, 'teacher_feats')['model_name'] == 'ViT-L-14'
    assert infer_frame_encoder(Config(dict(data, frame_encoder=dict(
        type='PixelGridEncoder', grid=4))), 'feats') == dict(type='PixelGridEncoder', grid=4)
    assert infer_frame_encoder(Config(dict(test_dataloader=dict(dataset=dict(feature_dirs=dict(
        feats='visual/my_resnet/frame_feature'))))), 'feats') is None
