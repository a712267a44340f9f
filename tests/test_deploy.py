"""ONNX deployment of a trained demo student: export, onnxruntime parity with PyTorch
(greedy and beam), int8 quality, the tools, and a part that cannot be exported."""
import json
import os
import shutil

import numpy as np
import onnx
import pytest
import torch
from mmengine.config import Config
from torch import nn

from capdistill.apis.inference import init_captioner
from capdistill.apis.onnx_export import (OnnxExportError, export_graphs, export_onnx,
                                         set_int8_weight_type)
from capdistill.apis.onnx_runner import OnnxCaptioner
from capdistill.datasets.demo import make_demo_dataset
from capdistill.registry import BACKBONES
from conftest import REPO, run_tool, run_tool_here

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
    from tools.analysis.backend_quality import split_batches
    return split_batches(Config.fromfile(cfg_path), split)


def test_export_files_check_and_are_reproducible(deployed):
    out = deployed['out']
    names = sorted(os.listdir(out))
    assert names == ['demo.int8.json', 'demo.int8.onnx', 'demo.int8.step.onnx',
                     'demo.json', 'demo.onnx', 'demo.step.onnx']
    for name in names:
        if name.endswith('.onnx'):
            onnx.checker.check_model(str(out / name), full_check=True)
    from capdistill.apis.onnx_runner import int8_weight_type
    int8_line = next(line for line in deployed['stdout'].splitlines()
                     if line.startswith(str(out / 'demo.int8.json')))
    assert f'multiplied as int8 on CPUs with VNNI (here: {int8_weight_type()})' in int8_line
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
    # an export whose json does not record the limit: onnxruntime's refusal in one line
    old = deployed['tmp'] / 'no_max_frames'
    shutil.copytree(deployed['out'], old, dirs_exist_ok=True)
    meta = json.load(open(deployed['fp32']))
    del meta['model']['max_frames']
    (old / 'demo.json').write_text(json.dumps(meta))
    with pytest.raises(ModelConfigError) as err:
        OnnxCaptioner(old / 'demo.json').generate(long)
    message = str(err.value)
    assert str(old / 'demo.json') in message and f'{limit} by {limit + 1}' in message
    assert '--num-frames' in message and '\n' not in message


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


@pytest.mark.java
def test_test_tool_decodes_the_export_as_its_cfg_options_say(deployed, tmp_path):
    """--cfg-options model.decode.* reach an ONNX export (beam here, PyTorch's captions);
    any other model option is refused: the export's files fix the model."""
    model = init_captioner(deployed['cfg'], deployed['ckpt'])
    expected = {}
    for batch in _batches(deployed['cfg'], 'test'):
        ids = model.generate(batch['inputs'], strategy='beam', beam_size=3)
        for vid, row in zip(batch['data_samples']['video_id'], ids):
            expected[vid] = model.tokenizer.decode(row.tolist())
    out = tmp_path / 'beam.json'
    res = run_tool_here(['tools/test.py', deployed['cfg'], str(deployed['out'] / 'demo.onnx'),
                         '--work-dir', str(tmp_path / 'work'), '--out', str(out),
                         '--cfg-options', 'model.decode.strategy=beam',
                         'model.decode.beam_size=3', 'test_evaluator.scorers=[Bleu,CIDEr]'])
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(out.read_text())['predictions'] == expected
    res = run_tool_here(['tools/test.py', deployed['cfg'], str(deployed['out'] / 'demo.onnx'),
                         '--work-dir', str(tmp_path / 'work'),
                         '--cfg-options', 'model.head.depth=3'])
    err = res.stderr.strip()
    assert res.returncode == 1 and '\n' not in err, err
    assert err.startswith('error: --cfg-options model.head.depth: ') and 'is an export' in err
    assert 'only model.decode.* options apply' in err


def _weight_values(model):
    """``weight - zero_point`` of every MatMulInteger weight of an ONNX model, by weight name."""
    from onnx import numpy_helper
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {n.input[1]: inits[n.input[1]].astype(np.int32) - inits[n.input[3]].astype(np.int32)
            for n in model.graph.node if n.op_type == 'MatMulInteger'}


def test_int8_weight_types_hold_the_same_values(deployed):
    """An int8 export's weights moved to int8 and back keep every value multiplied."""
    import copy
    path = str(deployed['out'] / 'demo.int8.step.onnx')
    stored = onnx.load(path)
    before = _weight_values(stored)
    assert len(before) >= 3  # the block's linear layers and the output projection
    assert all(stored_type(stored, n) == onnx.TensorProto.UINT8 for n in before)
    as_int8 = copy.deepcopy(stored)
    assert set_int8_weight_type(as_int8, 'int8') == 2 * len(before)
    assert all(stored_type(as_int8, n) == onnx.TensorProto.INT8 for n in before)
    back = copy.deepcopy(as_int8)
    assert set_int8_weight_type(back, 'uint8') == 2 * len(before)
    for model in (as_int8, back):
        after = _weight_values(model)
        assert all(np.array_equal(after[n], before[n]) for n in before)
    from onnx import numpy_helper
    for a, b in zip(back.graph.initializer, stored.graph.initializer):  # back as stored
        assert a.name == b.name and a.data_type == b.data_type
        assert np.array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))
    assert set_int8_weight_type(back, 'uint8') == 0  # already uint8: nothing to move
    onnx.checker.check_model(as_int8, full_check=True)


def stored_type(model, name):
    return next(t.data_type for t in model.graph.initializer if t.name == name)


def test_int8_weights_multiply_to_the_same_integers(tmp_path):
    """onnxruntime's integer product is the same with either weight type; a weight that
    something else reads stays as it is. Weights within 28 of their zero point keep the
    sum of a pair of products inside int16, so the equality holds on every x86 kernel."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    weights = dict(w1=rng.integers(100, 157, (64, 24)).astype(np.uint8),
                   w2=rng.integers(95, 148, (64, 24)).astype(np.uint8))
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    inits += [numpy_helper.from_array(np.array(128, np.uint8), 'z1'),
              numpy_helper.from_array(np.array(121, np.uint8), 'z2')]
    nodes = [helper.make_node('MatMulInteger', ['a', 'w1', 'za', 'z1'], ['y1']),
             helper.make_node('MatMulInteger', ['a', 'w2', 'za', 'z2'], ['y2']),
             helper.make_node('Identity', ['w2'], ['w2_copy'])]  # w2 is read elsewhere too
    graph = helper.make_graph(
        nodes, 'g', [helper.make_tensor_value_info('a', TensorProto.UINT8, [None, 64]),
                     helper.make_tensor_value_info('za', TensorProto.UINT8, [])],
        [helper.make_tensor_value_info('y1', TensorProto.INT32, [None, 24]),
         helper.make_tensor_value_info('y2', TensorProto.INT32, [None, 24]),
         helper.make_tensor_value_info('w2_copy', TensorProto.UINT8, [64, 24])], inits)
    stored = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    moved = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    assert set_int8_weight_type(moved, 'int8') == 2  # w1 and z1; w2 and z2 stay uint8
    assert stored_type(moved, 'w1') == onnx.TensorProto.INT8
    assert stored_type(moved, 'w2') == stored_type(moved, 'z2') == onnx.TensorProto.UINT8
    feed = dict(a=rng.integers(0, 256, (33, 64)).astype(np.uint8), za=np.array(131, np.uint8))
    outputs = [ort.InferenceSession(m.SerializeToString(),
                                    providers=['CPUExecutionProvider']).run(None, feed)
               for m in (stored, moved)]
    expected = (feed['a'].astype(np.int64) - 131) @ (weights['w1'].astype(np.int64) - 128)
    assert np.array_equal(outputs[0][0], expected)
    for a, b in zip(*outputs):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_int8_weight_type_follows_the_cpu(deployed, monkeypatch):
    """'auto' multiplies int8 weights where the CPU has VNNI, uint8 weights elsewhere."""
    import capdistill.apis.onnx_runner as runner
    cpus = [(dict(avx2=True, avx512_f=True, avx512_vnni=True), True),
            (dict(avx2=True, avx_vnni=True), True),
            (dict(avx2=True, avx512_f=True, avx512_bw=True, avx512_vnni=False), False),
            (dict(architecture='arm64', neon=True, dot=True), False)]
    for capabilities, vnni in cpus:
        assert runner.cpu_has_vnni(capabilities) is vnni, capabilities
    caps = torch.cpu.get_capabilities()
    assert runner.cpu_has_vnni() is bool(caps.get('avx512_vnni') or caps.get('avx_vnni'))
    with pytest.raises(ValueError, match="'auto' or one of"):
        runner.int8_weight_type('int4')
    with pytest.raises(ValueError, match='int4'):
        OnnxCaptioner(deployed['fp32'], int8_weights='int4')
    for vnni, expected in ((True, 'int8'), (False, 'uint8')):
        monkeypatch.setattr(runner, 'cpu_has_vnni', lambda vnni=vnni: vnni)
        assert runner.int8_weight_type() == expected
        assert OnnxCaptioner(deployed['int8']).int8_weights == expected
    assert OnnxCaptioner(deployed['fp32']).int8_weights is None


def test_benchmark_times_the_backends_side_by_side(deployed, capsys):
    """tools/analysis/benchmark.py --backends: PyTorch, fp32 and int8 onnxruntime in one
    run, fp32 with PyTorch's tokens, and the int8 weight type this CPU multiplies."""
    from capdistill.apis.onnx_runner import int8_weight_type
    from tools.analysis.benchmark import main
    int8 = ('onnx-int8', 'onnx-int8-int8w', 'onnx-int8-uint8w')
    res = main([deployed['cfg'], deployed['ckpt'], '--batch-sizes', '3', '--repeats', '1',
                '--no-slow', '--backends', 'torch', 'onnx', *int8])
    for strategy in ('greedy', 'beam5'):
        row = res['backends'][3][strategy]
        assert row['torch'] > 0 and row['onnx'] > 0 and all(row[b] > 0 for b in int8)
        assert row['onnx same tokens'] == 1.0
        for b in int8:
            assert row[f'{b}/torch speedup'] == pytest.approx(row['torch'] / row[b])
            assert 0 <= row[f'{b} same tokens'] <= 1
    out = capsys.readouterr().out
    assert f'onnx-int8 multiplies {int8_weight_type()} weights on this CPU' in out


@pytest.mark.parametrize('export', ['fp32', 'int8'])
def test_a_damaged_graph_is_named_in_one_line(deployed, tmp_path, export):
    """A cut-off graph is refused by the sha256 its json records; without that record
    (an edited json), by the parse error, named in one line either way."""
    import shutil

    from capdistill.utils import CheckpointError
    copy = tmp_path / 'copy'
    shutil.copytree(deployed['out'], copy)
    meta_path = copy / os.path.basename(deployed[export])
    step = copy / json.loads(meta_path.read_text())['graphs']['step']
    step.write_bytes(step.read_bytes()[:3000])
    with pytest.raises(CheckpointError, match='sha256 differs') as exc:
        OnnxCaptioner(str(meta_path))
    assert str(step) in str(exc.value) and 'tools/deploy.py' in str(exc.value)
    meta = json.loads(meta_path.read_text())
    del meta['sha256']
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match='is not a readable ONNX graph') as exc:
        OnnxCaptioner(str(meta_path))
    assert str(step) in str(exc.value)
    folder = os.path.join(deployed['root'], 'visual', 'grid8', 'frame_feature')
    video = os.path.join(folder, sorted(os.listdir(folder))[0])
    res = run_tool_here(['tools/caption_video.py', str(meta_path), video])
    err = res.stderr.strip()
    assert res.returncode == 1 and err.startswith('error:') and str(step) in err, err
    assert 'Traceback' not in err and '\n' not in err


def test_backend_quality_tool_scores_each_backend_on_the_split(deployed, tmp_path):
    """tools/analysis/backend_quality.py: PyTorch and its exports on the test split, greedy
    and beam; fp32 gives PyTorch's captions and scores, and the two int8 weight types the
    same captions (the same integers multiplied on any CPU whose sum is exact)."""
    out = tmp_path / 'quality.json'
    res = run_tool(['tools/analysis/backend_quality.py', deployed['cfg'], deployed['ckpt'],
                    '--backends', 'onnx', 'onnx-int8', 'onnx-int8-uint8w',
                    '--scorers', 'Bleu', 'CIDEr', '--beam-size', '3', '--out', str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    rows = {(r['decode'], r['backend']): r for r in data['rows']}
    assert set(rows) == {(d, b) for d in ('greedy', 'beam 3')
                         for b in ('torch', 'onnx', 'onnx-int8', 'onnx-int8-uint8w')}
    for decode in ('greedy', 'beam 3'):
        torch_row, fp32 = rows[(decode, 'torch')], rows[(decode, 'onnx')]
        assert torch_row['videos'] == fp32['identical'] == fp32['videos'] == 6
        assert fp32['CIDEr'] == torch_row['CIDEr'] and fp32['Bleu_4'] == torch_row['Bleu_4']
        assert 'METEOR' not in fp32
        caps = data['captions'][decode]
        assert caps['onnx'] == caps['torch']
        # 'auto' takes int8 weights only where the kernel's sum is exact (VNNI)
        assert caps['onnx-int8'] == caps['onnx-int8-uint8w']
    assert '| greedy | onnx | ' in res.stdout and 'captions identical to PyTorch' in res.stdout
    assert 'onnx-int8 and onnx-int8-uint8w agree on' in res.stdout


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
