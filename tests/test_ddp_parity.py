"""DDP gradients equal one process's on the whole batch, with captions of different lengths."""
import json
import os
import sys

import torch

from conftest import REPO, free_port, run_tool

PROBE = os.path.join(REPO, 'tests', 'ddp_grad_probe.py')


def _grads(out, *flags, dist=False):
    cmd = [PROBE, str(out), *flags]
    if dist:
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
               f'--master_port={free_port()}'] + cmd
    res = run_tool(cmd)
    assert res.returncode == 0, res.stderr[-2000:]
    return torch.load(out, weights_only=True), json.load(open(f'{out}.tokens.json'))


def _max_diff(a, b):
    assert a.keys() == b.keys() and len(a) > 10
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_caption_loss_mean_is_over_all_ranks_tokens(tmp_path):
    single, tokens = _grads(tmp_path / 'single.pt')
    dist, per_rank = _grads(tmp_path / 'dist.pt', dist=True)
    # the ranks really hold different numbers of caption tokens
    assert sum(per_rank) == sum(tokens) and per_rank[0] < per_rank[1]
    assert sum(v.abs().sum().item() for v in single.values()) > 0
    assert _max_diff(single, dist) <= 1e-6
    # a per-rank token mean (what DDP gets from a plain mean) gives other gradients:
    # the comparison above can fail
    naive, _ = _grads(tmp_path / 'naive.pt', '--per-rank-mean', dist=True)
    assert _max_diff(single, naive) > 1e-3
