"""tools/analysis/benchmark_decoding.py runs every row on a tiny model and reports what its
docs say (not a timing test: only that the rows are computed and consistent)."""
import json
import os
import sys

import pytest
import torch

from conftest import REPO, run_tool, write_tiny_config

sys.path.insert(0, os.path.join(REPO, 'tools', 'analysis'))


def test_benchmark_decoding_prints_every_row(tiny_root, tmp_path):
    cfg = write_tiny_config(tmp_path / 'student.py', tiny_root, model='_student')
    out = tmp_path / 'bench.json'
    res = run_tool(['tools/analysis/benchmark_decoding.py', cfg, '--rows', 'beam-vs-rows',
                    'batch1', 'lengths', 'normaliser', 'products', '--batch-sizes', '1', '2',
                    '--product-rows', '1', '3', '--product-shapes', '300x16',
                    '--repeats', '2', '--beam-size', '3', '--out', str(out)])
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
    # the wall-clock split: every part ran, and the parts lie within the total
    ph = b1['phases']
    assert all(ph[k] > 0 for k in ('encoder', 'setup', 'steps', 'total'))
    assert 0 <= ph['rest'] < ph['total']
    assert 'batch1 phases of a cached decode' in res.stdout
    assert 'batch1 floor: a cached step reads' in res.stdout
    for name in ('greedy', 'beam3'):
        row = got['lengths'][name]
        assert 0 < row['length_ratio'] <= 1 and row['videos'] >= 1
    norm = got['normaliser']
    assert norm['states'] >= 1 and norm['greedy_served'] == norm['states']
    shares = norm['share']
    assert set(shares) == {'1e-08', '0.01'}
    for share in shares.values():
        assert 0 < share['min'] <= share['median'] <= share['max'] <= 1
    # a looser bound never needs more rows
    assert shares['0.01']['max'] <= shares['1e-08']['max']
    least = norm['least']
    assert set(least) == set(shares)
    for tol, share in least.items():
        assert 0 < share['min'] <= share['median'] <= share['max'] <= shares[tol]['max']
    assert 'a beam step reads' in res.stdout
    # both ways round, on the model's output layer and the one asked for; below the size
    # where output_product turns the product round, it takes the plain one
    prods = got['products']
    vocab = head.output_weight.shape[0]
    assert set(prods) == {f'{vocab}x{head.output_weight.shape[1]}/1',
                          f'{vocab}x{head.output_weight.shape[1]}/3', '300x16/1', '300x16/3'}
    for row in prods.values():
        assert row['plain_s'] > 0 and row['tall_s'] > 0 and row['ratio'] > 0
        assert row['takes'] == 'plain'
    assert 'products 300x16 (0 MiB), 3 rows: plain' in res.stdout


def test_benchmark_decoding_rejects_a_bad_product_shape(capsys):
    from benchmark_decoding import parse_args
    with pytest.raises(SystemExit):
        parse_args(['cfg.py', '--rows', 'products', '--product-shapes', '16384*256'])
    assert '--product-shapes 16384*256: expected WORDSxWIDTH' in capsys.readouterr().err


def test_rows_to_bound_the_normaliser():
    """Two far-apart clusters of output rows: a state pointing at one reads that cluster
    only (the other's bound is ~100 nats below), a state between them reads both."""
    from benchmark_decoding import rows_to_bound_normaliser, words_holding_normaliser

    from capdistill.models.captioners.word_pick import VocabularyGroups
    g = torch.Generator().manual_seed(0)
    axis = torch.zeros(16)
    axis[0] = 10.0
    weight = torch.cat([axis + 0.01 * torch.randn(10, 16, generator=g),
                        -axis + 0.01 * torch.randn(90, 16, generator=g)])
    groups = VocabularyGroups(weight, groups=4)
    h = torch.zeros(3, 16)
    h[0, 0], h[1, 0], h[2, 1] = 5.0, -5.0, 5.0
    rows = rows_to_bound_normaliser(groups, h, 1e-8) * 100
    # orthogonal (the third): every word scores ~0, all are read
    assert rows.round().tolist() == [10, 90, 100]
    # the words that hold the normaliser: the pointed-at cluster alone for the first two;
    # for the third, every word holds ~1% and none may be left out within 1e-8, but 1% may
    # within 0.015 (one word's ~0.01)
    least = words_holding_normaliser(h, weight, 1e-8) * 100
    assert least.round().tolist() == [10, 90, 100]
    assert (words_holding_normaliser(h, weight, 0.015)[2] * 100).round() == 99
    # knowing the words never needs more rows than bounding them
    assert (least <= rows + 1e-9).all()
