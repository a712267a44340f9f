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
