"""Cost tools: FLOPs, deployed parameters and the benchmark script on a capdemo config."""
import os

from conftest import REPO

CFG = os.path.join(REPO, 'configs/sftcap/sftcap_grid16-to-grid8_1xb64-12e_capdemo.py')


def test_benchmark_and_flops(tmp_path):
    from tools.analysis.benchmark import main
    from tools.analysis.get_flops import main as flops_main
    res = main([CFG, '--batch-sizes', '2', '--repeats', '1', '--out', str(tmp_path / 'b.json')])
    row = res['student']['latency'][2]
    assert row['identical'] and row['greedy'] > 0 and row['beam5'] > 0
    assert res['student']['params_deployed'] < res['student']['params_total']
    assert res['teacher/student']['params'] > 3
    assert os.path.isfile(tmp_path / 'b.json')
    out = flops_main([CFG])
    assert out['teacher']['forward'] > out['deployed']['forward'] > 0
