"""Train and test every configs/kd run over several seeds and write the results table.

    OMP_NUM_THREADS=1 python tools/analysis/run_kd_table.py --seeds 0 1 2 --workers 2

Each (config, seed) trains with ``tools/train.py`` (no validation: the table reads the
test split) into ``work_dirs/kd_table/<config>/seed<S>`` and is tested with
``tools/test.py --out``; finished runs (their ``test.json`` exists) are skipped, so the
command can be re-run to resume. The teacher row is the demo teacher checkpoint, tested
once (one training seed). Parameters and latency are measured on the deployed model
(student) with one thread: greedy decoding of one video at a time, median over
``--latency-videos`` test videos. Writes ``configs/kd/results.md`` and ``results.json``.
"""
import argparse
import concurrent.futures as cf
import glob
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TEACHER = ('teacher (grid16, 8e)', 'configs/capdemo/baseline_teacher_grid16_1xb64-8e_capdemo.py',
           'work_dirs/baseline_teacher_grid16_1xb64-8e_capdemo/epoch_8.pth')
RUNS = [
    ('scratch student', 'baseline_student_grid8_1xb64-6e_capdemo.py'),
    ('word KD (KL, tau 2)', 'wordkd_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py'),
    ('sequence KD (beam 3)', 'seqkd_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py'),
    ('feature MSE (frame tokens)', 'featmse_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py'),
    ('feature cosine (head states)',
     'featcos_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py'),
    ('relational (similarity-preserving)',
     'relational_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py'),
    ('SFTCap hierarchy (obj+act+word+concepts)',
     'sftcaphier_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py'),
    ('quality-weighted caption loss', 'qualityweighted_student_grid8_1xb64-6e_capdemo.py'),
]


def _env():
    return dict(os.environ, OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1', PYTHONPATH=REPO)


def _run(cmd, log):
    with open(log, 'w') as f:
        proc = subprocess.run(cmd, cwd=REPO, env=_env(), stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f'{" ".join(cmd)} failed; see {log}')


def train_and_test(config, seed, root):
    name = osp.splitext(osp.basename(config))[0]
    wd = osp.join(root, name, f'seed{seed}')
    out = osp.join(wd, 'test.json')
    if osp.isfile(out):
        return config, seed, out
    os.makedirs(wd, exist_ok=True)
    t0 = time.time()
    _run([sys.executable, 'tools/train.py', config, '--work-dir', wd, '--cfg-options',
          f'randomness.seed={seed}', 'val_cfg=None', 'val_dataloader=None',
          'val_evaluator=None'], osp.join(wd, 'train.out'))
    ckpts = sorted(glob.glob(osp.join(wd, 'epoch_*.pth')),
                   key=lambda p: int(p.rsplit('_', 1)[1][:-4]))
    _run([sys.executable, 'tools/test.py', config, ckpts[-1], '--work-dir',
          osp.join(wd, 'test'), '--out', out], osp.join(wd, 'test.out'))
    print(f'{name} seed {seed}: {time.time() - t0:.0f} s', flush=True)
    return config, seed, out


def test_teacher(root):
    _, config, ckpt = TEACHER
    out = osp.join(root, 'teacher', 'test.json')
    if not osp.isfile(out):
        os.makedirs(osp.dirname(out), exist_ok=True)
        _run([sys.executable, 'tools/test.py', config, ckpt, '--work-dir',
              osp.join(root, 'teacher', 'test'), '--out', out],
             osp.join(root, 'teacher', 'test.out'))
    return out


def cost(config, checkpoint, videos):
    """(parameters, median latency in ms per video) of the deployed model."""
    import numpy as np
    import torch
    from mmengine.config import Config

    from capdistill.apis.inference import init_captioner
    from capdistill.evaluation.cost import count_parameters
    from capdistill.utils import trust_directory
    torch.set_num_threads(1)
    if checkpoint:  # this script's own runs
        trust_directory(osp.dirname(checkpoint))
    cfg = Config.fromfile(osp.join(REPO, config))
    model = init_captioner(cfg, checkpoint)
    params = count_parameters(model)
    ds = cfg.test_dataloader.dataset
    folder = osp.join(ds.data_root, ds.feature_dirs[model.feature_key])
    times = []
    for vid in videos:
        feats = torch.from_numpy(np.load(osp.join(folder, f'{vid}.npy'))).float()[None]
        inputs = {model.feature_key: feats,
                  f'{model.feature_key}_mask': torch.ones(feats.shape[:2], dtype=torch.bool)}
        t = time.perf_counter()
        model.generate(inputs)
        times.append(time.perf_counter() - t)
    return params, 1000 * statistics.median(times[1:] or times)


def _fmt(values, scale=100):
    values = [scale * v for v in values]
    if len(values) == 1:
        return f'{values[0]:.1f}'
    return f'{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--only', nargs='*', help='substrings of config names to run')
    parser.add_argument('--root', default='work_dirs/kd_table')
    parser.add_argument('--latency-videos', type=int, default=21)
    parser.add_argument('--table-only', action='store_true',
                        help='write the table from finished runs, train nothing')
    args = parser.parse_args()
    os.chdir(REPO)
    runs = [(label, osp.join('configs/kd', cfg)) for label, cfg in RUNS
            if not args.only or any(s in cfg for s in args.only)]
    if not args.table_only:
        test_teacher(args.root)
        jobs = [(cfg, seed) for seed in args.seeds for _, cfg in runs]
        with cf.ThreadPoolExecutor(args.workers) as pool:
            futures = [pool.submit(train_and_test, cfg, seed, args.root) for cfg, seed in jobs]
            for fut in cf.as_completed(futures):
                try:
                    fut.result()
                except RuntimeError as exc:
                    print(exc, flush=True)
    with open(osp.join(REPO, 'data/capdemo/splits/capdemo_test_list.json')) as f:
        videos = json.load(f)[:args.latency_videos]
    rows, results = [], {}
    teacher_out = osp.join(args.root, 'teacher', 'test.json')
    entries = [(TEACHER[0], TEACHER[1], [teacher_out], TEACHER[2])]
    for label, cfg in runs:
        name = osp.splitext(osp.basename(cfg))[0]
        outs = sorted(glob.glob(osp.join(args.root, name, 'seed*', 'test.json')))
        ckpt = sorted(glob.glob(osp.join(args.root, name, 'seed*', 'epoch_*.pth')))
        entries.append((label, cfg, outs, ckpt[0] if ckpt else None))
    for label, cfg, outs, ckpt in entries:
        outs = [o for o in outs if osp.isfile(o)]
        if not outs:
            continue
        aggs = [json.load(open(o))['aggregate'] for o in outs]
        params, latency = cost(cfg, ckpt, videos)
        results[label] = dict(config=cfg, seeds=len(aggs), aggregate=aggs, params=params,
                              latency_ms=latency)
        rows.append(f'| {label} | `{osp.basename(cfg)}` | {len(aggs)} | '
                    f'{_fmt([a["CIDEr"] for a in aggs])} | {_fmt([a["Bleu_4"] for a in aggs])} | '
                    f'{params / 1e6:.2f} M | {latency:.1f} |')
    table = ('| model | config | seeds | CIDEr | BLEU-4 | params | latency (ms/video) |\n'
             '|---|---|---|---|---|---|---|\n' + '\n'.join(rows) + '\n')
    with open(osp.join(REPO, 'configs/kd/results.md'), 'w') as f:
        f.write(table)
    with open(osp.join(REPO, 'configs/kd/results.json'), 'w') as f:
        json.dump(results, f, indent=1)
    print(table)


if __name__ == '__main__':
    main()
