"""tools/run_demo.py trains the rows the KD table recommends."""
import json
import os.path as osp
import statistics

from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MIN_SEEDS = 3


def _has_teacher(node):
    if isinstance(node, dict):
        return any(k in ('teacher_ckpt', 'teachers') or _has_teacher(v) for k, v in node.items())
    if isinstance(node, (list, tuple)):
        return any(_has_teacher(v) for v in node)
    return False


def test_demo_distils_the_best_row_of_the_kd_table():
    """The demo's distilled student is the table's distilled row (a teacher in one of its
    stages, full-data study, >= 3 seeds) with the highest mean CIDEr, stages in order."""
    from tools.run_demo import DISTILLED, SCRATCH
    with open(osp.join(REPO, 'configs/kd/results.json')) as f:
        rows = json.load(f)['rows']

    def chain(key):
        row = rows[key]
        return (chain(row['after']) if row.get('after') else []) + [osp.basename(row['config'])]

    candidates = {
        key: statistics.fmean(r['CIDEr'] for r in row['runs'].values())
        for key, row in rows.items()
        if row['kind'] == 'method' and row.get('teacher') == 'teacher'
        and len(row['runs']) >= MIN_SEEDS
        and any(_has_teacher(Config.fromfile(osp.join(REPO, 'configs/kd', c)).model.to_dict())
                for c in chain(key))}
    best = max(candidates, key=candidates.get)
    assert [osp.basename(c) for c in DISTILLED[1]] == chain(best), (best, candidates)
    # the scratch student is that row's same-architecture baseline (or the one it goes back to)
    base = rows[best]['baseline']
    while rows[base]['kind'] != 'baseline':
        base = rows[base]['baseline']
    assert [osp.basename(c) for c in SCRATCH[1]] == [osp.basename(rows[base]['config'])]
