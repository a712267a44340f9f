"""The demo: teacher, scratch student and distilled student on the capdemo data.

Builds the procedurally generated demo data if absent, trains the three models with
tools/train.py, scores them with tools/test.py and prints one table. The capdemo
videos are rendered by capdistill itself; they are not a real-world corpus.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import threading
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)  # tools.analysis
from capdistill.datasets.demo import DEFAULT_ROOT, config_for_root  # noqa: E402

TEACHER = 'configs/capdemo/baseline_teacher_grid16_1xb64-8e_capdemo.py'
# The students are rows of the KD table (configs/kd/README.md), trained as its seed 0 is: the
# distilled row with the highest mean CIDEr over the table's seeds and the scratch student
# of its architecture (tests/test_run_demo.py checks both against configs/kd/results.json).
# A row is a chain of stages; a stage after the first starts from the previous one's weights.
SCRATCH = ('student (scratch, HAM)', ['configs/kd/baseline_student-ham_grid8_1xb64-6e_capdemo.py'])
DISTILLED = ('student (distilled: SFTCap hierarchy, then SCST)',
             ['configs/kd/sftcaphier_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py',
              'configs/kd/scst_sftcaphier-student_grid8_1xb64-2e_capdemo.py'])
RUNS = [('teacher', [TEACHER]), SCRATCH, DISTILLED]
SEED = 0
COLUMNS = ['Bleu_4', 'METEOR', 'ROUGE_L', 'CIDEr']


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-root', default=DEFAULT_ROOT,
                        help='where the demo data is built and read (the configs follow it)')
    parser.add_argument('--work-root', default='work_dirs',
                        help='one work dir per model under it, and demo/ with the logs and '
                             'the results table (default: work_dirs)')
    parser.add_argument('--force', action='store_true', help='retrain even if checkpoints exist')
    return parser.parse_args()


def summary_line(line):
    """The short form of a log line worth showing: checkpoints saved, and one line per
    validation (or test) with its scores; None for the rest."""
    import re
    text = line.split(' - ')[-1].strip()
    if 'Saving checkpoint at' in text:
        return text
    match = re.match(r'Epoch\((val|test)\)\s*\[(\d+)\]\[\d+/\d+\]\s+(.*)', text)
    if not match or 'CIDEr' not in text:
        return None
    scores = dict(re.findall(r'(\w+): ([-\d.]+)', match.group(3)))
    wanted = [f'{k} {float(scores[k]):.3f}' for k in COLUMNS if k in scores]
    what = 'validation' if match.group(1) == 'val' else 'test'
    return f'epoch {match.group(2)} {what}: ' + '  '.join(wanted)


def run(cmd, log_path, label, threads):
    """Run a tool, keep its full log, echo its epoch summaries prefixed with ``label``."""
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE='1', PYTHONUNBUFFERED='1')
    if threads:  # else the tools' default for the machine's cores
        env['OMP_NUM_THREADS'] = str(threads)
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([sys.executable] + cmd, cwd=REPO, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for line in proc.stdout:
            log.write(line)
            shown = summary_line(line)
            if shown:
                print(f'    [{label}] {shown}', flush=True)
        if proc.wait() != 0:
            tail = ''.join(open(log_path).readlines()[-15:])
            raise RuntimeError(f'{" ".join(cmd[:2])} failed; last lines of {log_path}:\n{tail}')


def train_and_test(label, stages, args, demo_dir, student=True, teacher_ckpt=None,
                   threads=None):
    """Train a row's stages (skipping finished ones) and test the last; (config, ckpt, scores)."""
    from mmengine.config import Config
    ckpt = None
    for config in stages:
        stem = osp.splitext(osp.basename(config))[0]
        config = config_for_root(config, args.data_root, demo_dir)
        work_dir = osp.join(args.work_root, stem)
        cfg = Config.fromfile(config)
        overrides = {}
        if student:  # seeded like the table's seed 0
            overrides['randomness.seed'] = SEED
            # the teacher this demo trained, wherever work_root is
            if 'teacher_ckpt' in cfg.model:
                overrides['model.teacher_ckpt'] = teacher_ckpt
            if 'teacher_ckpt' in cfg.model.get('kd', {}):  # SCST's distillation term
                overrides['model.kd.teacher_ckpt'] = teacher_ckpt
        if ckpt is not None:  # a later stage starts from the previous stage's weights
            overrides.update({'model.student_ckpt': ckpt, 'model.sampler.seed': SEED})
        if overrides:  # one file that training, testing and measuring all read
            cfg.merge_from_dict(overrides)
            config = osp.join(demo_dir, f'{stem}.py')
            cfg.dump(config)
        ckpt = osp.join(work_dir, f'epoch_{cfg.train_cfg.max_epochs}.pth')
        if args.force or not osp.isfile(ckpt):
            print(f'[demo] training {label}: {config}', flush=True)
            run(['tools/train.py', config, '--work-dir', work_dir],
                osp.join(demo_dir, f'{stem}.train.log'), label, threads)
    out = osp.join(demo_dir, f'{stem}.test.json')
    print(f'[demo] testing {label} on the test split', flush=True)
    run(['tools/test.py', config, ckpt, '--work-dir', work_dir, '--out', out],
        osp.join(demo_dir, f'{stem}.test.log'), label, threads)
    with open(out) as f:
        return config, ckpt, json.load(f)['aggregate']


def measure(config, checkpoint, beam_size=5):
    """Costs of the deployed model on test videos (CPU, one thread).

    Parameters (deployed, and in training with the teacher), FLOPs per video of a
    teacher-forced full-length caption, and median ms per video of greedy and beam
    decoding at batch 1 and 32.
    """
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from tools.analysis.benchmark import build

    from capdistill.apis import init_captioner
    from capdistill.evaluation.cost import (count_parameters, dummy_batch, flops_per_video,
                                            latency_per_video)
    from capdistill.registry import DATASETS

    torch.set_num_threads(1)
    cfg = Config.fromfile(config)
    model = init_captioner(cfg, checkpoint)  # an SCST run: the captioner it fine-tuned
    _, teacher, whole = build(config)
    with DefaultScope.overwrite_default_scope('capdistill'):
        dataset = DATASETS.build(cfg.test_dataloader.dataset)

    def batch_of(n):
        items = [dataset[i]['inputs'] for i in range(min(n, len(dataset)))]
        return model.data_preprocessor(dict(inputs={k: [it[k] for it in items]
                                                    for k in items[0]}))['inputs']

    inputs, tokens = dummy_batch(model, 2, next(iter(batch_of(1).values())).shape[1])
    cost = dict(params=count_parameters(model),
                params_training=count_parameters(whole) + (
                    count_parameters(teacher) if teacher is not None else 0),
                flops=flops_per_video(model, inputs, tokens)['forward'])
    for bs in (1, 32):
        inputs = batch_of(bs)
        repeats = 20 if bs == 1 else 5
        cost[f'greedy_b{bs}'] = 1000 * latency_per_video(model, inputs, repeats=repeats)
        cost[f'beam_b{bs}'] = 1000 * latency_per_video(model, inputs, repeats=repeats,
                                                       strategy='beam', beam_size=beam_size)
    return cost


def main():
    args = parse_args()
    os.chdir(REPO)
    import capdistill
    capdistill.setup_runtime()  # compatibility patches (fast config dumps), this process only
    start = time.time()
    from capdistill.datasets.demo import make_demo_dataset
    from capdistill.utils import trust_directory
    print(f'[demo] data: {args.data_root} (procedurally generated capdemo videos)', flush=True)
    make_demo_dataset(args.data_root)
    demo_dir = osp.join(args.work_root, 'demo')
    os.makedirs(demo_dir, exist_ok=True)
    results = {}

    def row(label, stages, student=True, teacher_ckpt=None, threads=None):
        try:
            results[label] = train_and_test(label, stages, args, demo_dir, student,
                                            teacher_ckpt, threads)
        except BaseException as exc:  # re-raised by the main thread
            results[label] = exc

    # The scratch student needs no teacher: it trains beside it, one thread each.
    scratch = threading.Thread(target=row, args=SCRATCH, kwargs=dict(threads=1))
    scratch.start()
    row('teacher', [TEACHER], student=False, threads=1)
    if not isinstance(results['teacher'], BaseException):
        row(*DISTILLED, teacher_ckpt=results['teacher'][1])
    scratch.join()
    for outcome in results.values():
        if isinstance(outcome, BaseException):
            sys.exit(f'[demo] {outcome}')
    rows = []
    for label, _ in RUNS:
        config, ckpt, scores = results[label]
        trust_directory(osp.dirname(ckpt))
        rows.append(dict(model=label, **measure(config, ckpt), **{k: scores[k] for k in COLUMNS}))
    table = format_table(rows)
    versus = against_teacher(rows)
    print('\n' + table + '\n\n' + versus)
    with open(osp.join(demo_dir, 'results.md'), 'w') as f:
        f.write('Demo results on capdemo (procedurally generated videos, test split with '
                'held-out attribute-action combinations).\n\n' + table + '\n\n' + versus + '\n')
    print(f'\n[demo] done in {time.time() - start:.0f} s; table in {demo_dir}/results.md')


def against_teacher(rows):
    """One line per student: its CIDEr as a fraction of the teacher's, and its cost ratios."""
    teacher = rows[0]
    lines = ['Against the teacher (one seed):']
    for r in rows[1:]:
        lines.append(f'  {r["model"]}: CIDEr {100 * r["CIDEr"]:.1f} = '
                     f'{100 * r["CIDEr"] / teacher["CIDEr"]:.0f}% of the teacher\'s '
                     f'{100 * teacher["CIDEr"]:.1f}; {teacher["params"] / r["params"]:.1f}x fewer '
                     f'deployed parameters; greedy latency at batch 1 '
                     f'{r["greedy_b1"] / teacher["greedy_b1"]:.2f}x the teacher\'s')
    lines.append('Several seeds with paired differences and 95% intervals: configs/kd/README.md '
                 '(tools/analysis/run_kd_table.py).')
    return '\n'.join(lines)


def format_table(rows):
    """Markdown table: scores (x100), parameters, FLOPs and ms per video."""
    head = ('| model | BLEU-4 | METEOR | ROUGE-L | CIDEr | params (training) | MFLOPs/video '
            '| greedy b1 | beam5 b1 | greedy b32 | beam5 b32 |')
    lines = [head, '|' + '---|' * 11]
    for r in rows:
        lines.append(f'| {r["model"]} | {100 * r["Bleu_4"]:.1f} | {100 * r["METEOR"]:.1f} | '
                     f'{100 * r["ROUGE_L"]:.1f} | {100 * r["CIDEr"]:.1f} | '
                     f'{r["params"] / 1e6:.2f} M ({r["params_training"] / 1e6:.2f} M) | '
                     f'{r["flops"] / 1e6:.1f} | {r["greedy_b1"]:.1f} | {r["beam_b1"]:.1f} | '
                     f'{r["greedy_b32"]:.2f} | {r["beam_b32"]:.2f} |')
    lines.append('')
    lines.append('params: deployed (in training, teacher included); MFLOPs: one teacher-forced '
                 'full-length caption; greedy/beam5 bN: median ms per video at batch N on one '
                 'CPU thread.')
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
