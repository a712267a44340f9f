"""Cost tools: FLOPs, deployed parameters and the benchmark script on a capdemo config."""
import os

from conftest import REPO

CFG = os.path.join(REPO, 'configs/sftcap/sftcap_grid16-to-grid8_1xb64-12e_capdemo.py')


def _on_tiny_vocabulary(tmp_path, root):
    """The capdemo config with its word vocabulary built from the tiny fixture dataset
    (a fresh clone has no data/capdemo)."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(
        f"_base_ = ['{CFG}']\n"
        f"_tok = dict(type='WordTokenizer', vocab_file='{root}/language/vocab.json',\n"
        f"            build_from=dict(ann_file='{root}/language/tiny_caption.json',\n"
        f"                            split_file='{root}/splits/tiny_train_list.json'))\n"
        "model = dict(student=dict(tokenizer=_tok), teacher=dict(tokenizer=_tok))\n")
    return str(cfg)


def test_benchmark_and_flops(tmp_path, tiny_root):
    from tools.analysis.benchmark import main
    from tools.analysis.get_flops import main as flops_main
    cfg = _on_tiny_vocabulary(tmp_path, tiny_root)
    res = main([cfg, '--batch-sizes', '2', '--repeats', '1', '--out', str(tmp_path / 'b.json')])
    row = res['student']['latency'][2]
    assert row['identical'] and row['greedy'] > 0 and row['beam5'] > 0
    assert res['student']['params_deployed'] < res['student']['params_total']
    assert res['teacher/student']['params'] > 3
    assert os.path.isfile(tmp_path / 'b.json')
    out = flops_main([cfg])
    assert out['teacher']['forward'] > out['deployed']['forward'] > 0


def test_flop_counter_counts_cpu_attention_and_lstm():
    import torch
    import torch.nn.functional as F

    from capdistill.evaluation.cost import flop_counter
    q, k = torch.randn(2, 4, 7, 16), torch.randn(2, 4, 9, 16)
    v = torch.randn(2, 4, 9, 8)
    with flop_counter() as counter:
        F.scaled_dot_product_attention(q, k, v)
    # q k^T: 2*7*9*16 per head, then (.) v: 2*7*9*8 per head, 8 heads in all
    assert counter.get_total_flops() == 8 * (2 * 7 * 9 * 16 + 2 * 7 * 9 * 8)

    lstm = torch.nn.LSTM(6, 5, bidirectional=True, batch_first=True)
    with torch.no_grad(), flop_counter() as counter:
        lstm(torch.randn(3, 4, 6))
    # two directions x 12 (time, batch) steps x (4H x I + 4H x H) multiply-adds
    assert counter.get_total_flops() == 2 * 12 * 2 * (20 * 6 + 20 * 5)
