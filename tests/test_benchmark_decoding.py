"""tools/analysis/benchmark_decoding.py runs every row on a tiny model and reports what its
docs say (not a timing test: only that the rows are computed and consistent)."""
import json

from conftest import run_tool, write_tiny_config


def test_benchmark_decoding_prints_every_row(tiny_root, tmp_path):
    cfg = write_tiny_config(tmp_path / 'student.py', tiny_root, model='_student')
    out = tmp_path / 'bench.json'
    res = run_tool(['tools/analysis/benchmark_decoding.py', cfg, '--rows', 'beam-vs-rows',
                    'batch1', 'lengths', '--batch-sizes', '1', '2', '--repeats', '2',
                    '--beam-size', '3', '--out', str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got['clock'] == 'cpu'
    assert set(got['beam_vs_rows']) == {'1', '2'}
    for row in got['beam_vs_rows'].values():
        assert row['ratio'] > 0 and row['beam_s'] > 0 and row['greedy_rows_s'] > 0
    b1 = got['batch1']
    assert b1['identical'] is True and b1['speedup'] > 0
    # the floor counts the head's weights once per token (the word positions aside)
    from capdistill.apis.inference import init_captioner
    head = init_captioner(cfg).head
    expected = sum(p.numel() * 4 for n, p in head.named_parameters() if n != 'word_pos')
    assert b1['bytes_per_token'] == expected
    assert b1['floor_s'] > 0 and b1['floor_speedup'] > 0
    assert 'batch1 floor: a cached step reads' in res.stdout
    for name in ('greedy', 'beam3'):
        row = got['lengths'][name]
        assert 0 < row['length_ratio'] <= 1 and row['videos'] >= 1
