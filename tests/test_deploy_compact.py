"""ONNX export of a student with a compact vocabulary (``CompactTokenizer``): tools/deploy.py
carries the compact token ids in its json, and onnxruntime gives PyTorch's tokens and captions,
with words mapped in and out through the compact list."""
import json
import os

import torch

from capdistill.apis.inference import init_captioner
from capdistill.apis.onnx_runner import OnnxCaptioner
from capdistill.datasets.tokenizers import ClipBPETokenizer, CompactTokenizer
from conftest import REPO, run_tool

DEMO_CFG = os.path.join(REPO, 'configs/capdemo/baseline_student_grid8_1xb64-8e_capdemo.py')
CAPTIONS = ['a red ball rolls to the left', 'two blue squares move up and down',
            'a green circle grows bigger', 'the small square spins slowly']
CFG_TEXT = '''_base_ = ['{base}']
model = dict(tokenizer=dict(_delete_=True, type='CompactTokenizer',
                            base=dict(type='ClipBPETokenizer'), ids={ids}),
             visual_encoder=dict(embed_dim=32), head=dict(embed_dim=32, num_heads=2))
'''


def test_compact_student_exports_and_runs_on_onnxruntime(tmp_path):
    ids = CompactTokenizer.select(ClipBPETokenizer(), CAPTIONS)
    cfg = tmp_path / 'compact.py'
    cfg.write_text(CFG_TEXT.format(base=DEMO_CFG, ids=ids))
    model = init_captioner(str(cfg))
    assert model.head.vocab_size == len(ids) < 1000
    # random weights, made peaked so that the searches' choices are clear-cut
    torch.manual_seed(0)
    with torch.no_grad():
        model.head.word_embed.weight.mul_(40)
    ckpt = tmp_path / 'compact.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)

    out = tmp_path / 'onnx'
    res = run_tool(['tools/deploy.py', str(cfg), str(ckpt), '--out', str(out), '--name', 'c'])
    assert res.returncode == 0, res.stderr[-3000:]
    meta = json.loads((out / 'c.json').read_text())
    assert meta['tokenizer']['type'] == 'CompactTokenizer'
    assert meta['tokenizer']['ids'] == ids and meta['model']['vocab_size'] == len(ids)

    model = init_captioner(str(cfg), str(ckpt))
    runner = OnnxCaptioner(out / 'c.onnx')
    feats = torch.randn(6, 16, 192, generator=torch.Generator().manual_seed(1))
    inputs = dict(feats=feats, feats_mask=torch.ones(6, 16, dtype=torch.bool))
    inputs['feats_mask'][2, 9:] = False
    for decode in (dict(strategy='greedy'), dict(strategy='beam', beam_size=3)):
        ref, got = model.generate(inputs, **decode), runner.generate(inputs, **decode)
        assert torch.equal(ref, got), decode
        # ids are compact ids: the export's tokenizer maps them out to the same words
        assert int(ref.max()) < len(ids)
        texts = [runner.tokenizer.decode(row.tolist()) for row in got]
        assert texts == [model.tokenizer.decode(row.tolist()) for row in ref]
        assert any(t.strip() for t in texts)
    # and maps words in: a seen caption, and a word the captions never had (spelled in bytes)
    for text in (CAPTIONS[0], 'a purple zebra'):
        assert runner.tokenizer.encode(text) == model.tokenizer.encode(text)
        assert runner.tokenizer.decode(runner.tokenizer.encode(text)).strip() == text
