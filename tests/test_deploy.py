"""ONNX deployment of a trained demo student: export, onnxruntime parity with PyTorch
(greedy and beam), int8 quality, the tools, and a part that cannot be exported."""
import json
import os

import onnx
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from torch import nn

from capdistill.apis.inference import init_captioner
from capdistill.apis.onnx_export import OnnxExportError, export_graphs, export_onnx
from capdistill.apis.onnx_runner import OnnxCaptioner
from capdistill.datasets.demo import make_demo_dataset
from capdistill.registry import BACKBONES, MODELS
from conftest import REPO, run_tool

DEMO_CFG = os.path.join(REPO, 'configs/capdemo/baseline_student_grid8_1xb64-8e_capdemo.py')
EPOCHS = 30  # sure of its words: one changed caption moves a 6-video split ~8 CIDEr
CFG_TEXT = '''_base_ = ['{base}']
_root = '{root}'
_tok = dict(type='WordTokenizer', vocab_file=_root + '/language/vocab.json',
            build_from=dict(ann_file=_root + '/language/capdemo_caption.json',
                            split_file=_root + '/splits/capdemo_train_list.json'))
model = dict(tokenizer=_tok, visual_encoder=dict(embed_dim=64),
             head=dict(embed_dim=64, num_heads=2){extra_model})
train_dataloader = dict(batch_size=16, dataset=dict(data_root=_root, tokenizer=_tok))
val_dataloader = dict(dataset=dict(data_root=_root, tokenizer=_tok))
test_dataloader = dict(dataset=dict(data_root=_root, tokenizer=_tok))
val_evaluator = dict(type='CaptionMetric', scorers=['Bleu', 'CIDEr'])
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=2e-3))
train_cfg = dict(max_epochs={epochs}, val_interval={epochs} + 1)  # no validation: no Java here
default_hooks = dict(logger=dict(interval=50))
'''


def _write_cfg(path, root, extra_model=''):
    path.write_text(CFG_TEXT.format(base=DEMO_CFG, root=root, epochs=EPOCHS,
                                    extra_model=extra_model))
    return str(path)


@pytest.fixture(scope='module')
def deployed(tmp_path_factory):
    """A small demo student trained by tools/train.py, exported by tools/deploy.py --int8."""
    tmp = tmp_path_factory.mktemp('deploy')
    root = str(tmp / 'capdemo')
    make_demo_dataset(root, seed=3, num_videos=30, verbose=False)
    cfg = _write_cfg(tmp / 'student.py', root)
    work = tmp / 'work'
    res = run_tool(['tools/train.py', cfg, '--work-dir', str(work)])
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = str(work / f'epoch_{EPOCHS}.pth')
    out = tmp / 'onnx'
    res = run_tool(['tools/deploy.py', cfg, ckpt, '--out', str(out), '--int8', '--name', 'demo'])
    assert res.returncode == 0, res.stderr[-3000:]
    return dict(tmp=tmp, root=root, cfg=cfg, ckpt=ckpt, out=out, stdout=res.stdout,
                fp32=str(out / 'demo.json'), int8=str(out / 'demo.int8.json'))


def _batches(cfg_path, split):
    """Preprocessed batches of a split, as the test loop sees them."""
    cfg = Config.fromfile(cfg_path)
    loader = cfg.test_dataloader if split == 'test' else cfg.val_dataloader
    with DefaultScope.overwrite_default_scope('capdistill'):
        loader = Runner.build_dataloader(loader)
        prep = MODELS.build(dict(type='CaptionDataPreprocessor'))
    return [prep(batch) for batch in loader]


def test_export_files_check_and_are_reproducible(deployed):
    out = deployed['out']
    names = sorted(os.listdir(out))
    assert names == ['demo.int8.json', 'demo.int8.onnx', 'demo.int8.step.onnx',
                     'demo.json', 'demo.onnx', 'demo.step.onnx']
    for name in names:
        if name.endswith('.onnx'):
            onnx.checker.check_model(str(out / name), full_check=True)
    meta = json.loads((out / 'demo.json').read_text())
    assert meta['format'] == 'capdistill-onnx' and not meta['int8']
    assert meta['tokenizer']['type'] == 'WordTokenizer' and 'ball' in meta['tokenizer']['words']
    assert meta['frame_encoder'] == dict(type='PixelGridEncoder', grid=8)
    assert meta['num_frames'] == 16 and meta['feature_dim'] == 192
    assert meta['decode']['strategy'] == 'greedy' and meta['decode']['max_len'] == 16
    # dynamic batch and caption length: the step graph's cache grows by one per token
    step = onnx.load(str(out / 'demo.step.onnx')).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(step.input) + list(step.output)}
    assert dims['token'] == ['batch'] and dims['logits'][0] == 'batch'
    assert dims['in.caches.0.kv'][0] == 'batch' and isinstance(dims['in.caches.0.kv'][3], str)
    assert dims['out.caches.0.kv'][3] != dims['in.caches.0.kv'][3]
    # int8: the linear layers and the output projection are integer matrix products: no
    # float product left that reads a weight (an initializer, or a transpose of one)
    graph = onnx.load(str(out / 'demo.int8.step.onnx')).graph
    weights = {t.name for t in graph.initializer}
    transposed = {o for n in graph.node if n.op_type == 'Transpose' and n.input[0] in weights
                  for o in n.output}
    assert 'MatMulInteger' in {n.op_type for n in graph.node}
    float_products = [n.name for n in graph.node if n.op_type in ('MatMul', 'Gemm')
                      and set(n.input) & (weights | transposed)]
    assert not float_products, float_products
    assert os.path.getsize(out / 'demo.int8.step.onnx') < 0.5 * os.path.getsize(
        out / 'demo.step.onnx')
    # the same export again (in-process this time) gives the same bytes, json included
    again = deployed['tmp'] / 'again'
    export_onnx(deployed['cfg'], deployed['ckpt'], str(again), name='demo', int8=True)
    for name in names:
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    # an exported student (safetensors + json) deploys to the very same graphs and settings
    from capdistill.apis.export import export_student
    _, student_json = export_student(deployed['cfg'], deployed['ckpt'], str(deployed['tmp'] / 'st'))
    from_student = deployed['tmp'] / 'from_student'
    export_onnx(student_json, None, str(from_student), name='demo')
    for name in ('demo.onnx', 'demo.step.onnx'):
        assert (from_student / name).read_bytes() == (out / name).read_bytes(), name
    other = json.loads((from_student / 'demo.json').read_text())
    assert {k: v for k, v in other.items() if k != 'source'} == {
        k: v for k, v in meta.items() if k != 'source'}


def test_fp32_same_tokens_as_pytorch_greedy_and_beam(deployed):
    model = init_captioner(deployed['cfg'], deployed['ckpt'])
    runner = OnnxCaptioner(deployed['out'] / 'demo.onnx')
    rows = 0
    for split in ('valid', 'test'):
        for batch in _batches(deployed['cfg'], split):
            inputs = batch['inputs']
            for decode in (dict(strategy='greedy'), dict(strategy='beam', beam_size=5)):
                ref, got = model.generate(inputs, **decode), runner.generate(inputs, **decode)
                differ = [i for i in range(len(ref)) if not torch.equal(ref[i], got[i])]
                assert ref.shape == got.shape and not differ, (split, decode, differ)
            rows += len(ref)
    assert rows >= 8
    # another batch size than the export's example: one video alone
    one = {k: v[:1] for k, v in inputs.items()}
    assert torch.equal(runner.generate(one, strategy='beam', beam_size=3),
                       model.generate(one, strategy='beam', beam_size=3))
    with pytest.raises(ValueError, match='cache only'):
        runner.generate(one, use_cache=False)
    # more frames than the student has positions for: named, as by the PyTorch model
    from capdistill.utils.requirements import ModelConfigError
    limit = model.visual_encoder.max_frames
    assert json.load(open(deployed['fp32']))['model']['max_frames'] == limit
    key = model.feature_key
    long = {key: torch.zeros(1, limit + 1, inputs[key].shape[-1]),
            f'{key}_mask': torch.ones(1, limit + 1, dtype=torch.bool)}
    for captioner in (model, runner):
        with pytest.raises(ModelConfigError, match=f'positions for {limit} frames, got '
                                                   f'{limit + 1}'):
            captioner.generate(long)


@pytest.mark.java
def test_int8_within_two_cider_of_fp32(deployed):
    from capdistill.evaluation.caption_scorer import score_captions
    batches = _batches(deployed['cfg'], 'test')
    refs, preds = {}, {}
    backends = dict(torch=init_captioner(deployed['cfg'], deployed['ckpt']),
                    fp32=OnnxCaptioner(deployed['fp32']), int8=OnnxCaptioner(deployed['int8']))
    for name, model in backends.items():
        preds[name] = {}
        for batch in batches:
            for item in model.predict(batch['inputs'], batch['data_samples']):
                preds[name][item['video_id']] = item['pred_caption']
                refs[item['video_id']] = item['refs']
    cider = {k: 100 * score_captions(p, refs, ['CIDEr'])['CIDEr'] for k, p in preds.items()}
    assert preds['fp32'] == preds['torch']
    assert cider['fp32'] > 20, cider  # a student that learnt something, so the gap means something
    assert abs(cider['int8'] - cider['fp32']) <= 2.0, cider
    print('test-split CIDEr', cider)


@BACKBONES.register_module(force=True)
class SpectralTestEncoder(nn.Module):
    """A temporal encoder with an FFT, which has no ONNX form in the exporter."""

    def forward(self, x, mask):
        return torch.fft.fft(x, dim=1).abs() + x, mask


def test_unsupported_part_fails_with_one_line_naming_it(deployed, tmp_path, capsys):
    cfg = _write_cfg(tmp_path / 'fft.py', deployed['root'],
                     extra_model=", encoder=dict(type='SpectralTestEncoder')")
    model = init_captioner(cfg, deployed['ckpt'])
    with pytest.raises(OnnxExportError) as err:
        export_graphs(model, str(tmp_path / 'x'), 'x')
    assert str(err.value).startswith('cannot export encoder (SpectralTestEncoder) to ONNX')
    assert 'fft' in str(err.value)
    from tools.deploy import main
    with pytest.raises(SystemExit) as stop:
        main([cfg, deployed['ckpt'], '--out', str(tmp_path / 'y')])
    assert stop.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith('error: cannot export encoder (SpectralTestEncoder) to ONNX')
    assert not any('Traceback' in line for line in lines)


@pytest.mark.java
def test_tools_take_the_onnx_export(deployed, tmp_path):
    """tools/test.py scores the export like a checkpoint; caption_video.py captions a clip
    with the export's own frame encoder; both agree with PyTorch."""
    from capdistill.apis.captioning import caption_video, init_video_captioner
    out = tmp_path / 'onnx.json'
    res = run_tool(['tools/test.py', deployed['cfg'], str(deployed['out'] / 'demo.onnx'),
                    '--work-dir', str(tmp_path / 'work'), '--out', str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    model = init_video_captioner(deployed['cfg'], deployed['ckpt'])
    expected = {}
    for batch in _batches(deployed['cfg'], 'test'):
        for item in model.predict(batch['inputs'], batch['data_samples']):
            expected[item['video_id']] = item['pred_caption']
    assert json.loads(out.read_text())['predictions'] == expected
    videos = os.path.join(deployed['root'], 'raw_videos')
    clip = os.path.join(videos, sorted(os.listdir(videos))[0])
    res = run_tool(['tools/caption_video.py', deployed['fp32'], str(deployed['out'] / 'demo.onnx'),
                    clip, '--beam-size', '3'])
    assert res.returncode == 0, res.stderr[-3000:]
    caption = res.stdout.splitlines()[0].split('\t')[1]
    assert caption == caption_video(model, clip, strategy='beam', beam_size=3)['caption']
