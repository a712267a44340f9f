"""Train and test every configs/kd row over several seeds; write the paired-comparison table.

    OMP_NUM_THREADS=1 python tools/analysis/run_kd_table.py            # seeds 0-4, 2 workers
    python tools/analysis/run_kd_table.py --from-json configs/kd/results.json  # markdown only

Each (row, seed) is trained by ``tools/train.py`` (no validation: the table reads the test
split) into ``<root>/<config>/seed<S>`` and tested by ``tools/test.py --out test.json``; runs
are separate single-thread processes, ``--workers`` at a time, and a run whose
``test.json`` exists is skipped, so re-running resumes. Every student architecture has a
scratch baseline of the same architecture trained on the same seeds; each other row gets
the mean paired CIDEr difference to its baseline with a 95% Student-t interval
(``scipy.stats.t``, n-1 degrees of freedom, over the seeds both have). Teachers are one
checkpoint each (the one the distilled configs name); a missing one is trained first
when its config is known, otherwise the row says which command makes it. Parameters and
latency are measured on the deployed model (the student alone) with one thread: greedy
decoding of one video at a time, median over ``--latency-videos`` test videos.
``results.json`` keeps every seed's metrics; the markdown is generated from it.
``--data-root`` runs the rows on another capdemo build (teachers then train under ``--root``).
"""
import argparse
import concurrent.futures as cf
import datetime
import fnmatch
import glob
import json
import math
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
import threading
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
from capdistill.datasets.demo import DEFAULT_ROOT, config_for_root  # noqa: E402
from capdistill.datasets.demo.configs import DEFAULT_WORK_ROOT  # noqa: E402
from capdistill.engine.config_check import ConfigError  # noqa: E402
KD = 'configs/kd'

# Row specification: key, label, config (a file name or glob patterns in configs/kd; a
# pattern that matches several files gives one row each), kind ('teacher' | 'baseline' |
# 'method'), baseline (the same-architecture scratch row), teacher (whose CIDEr the
# fraction is of), teachers (further teacher rows whose checkpoints the run reads), after
# (a row whose same-seed checkpoint the run starts from), why (a note for the table). A row
# whose config is not in configs/kd yet is listed as pending.
ROWS = [
    dict(key='teacher', label='teacher (grid16, 8e)', kind='teacher',
         config='configs/capdemo/baseline_teacher_grid16_1xb64-8e_capdemo.py'),
    dict(key='teacher_grid8', label='teacher (grid8, 8e)', kind='teacher',
         config='baseline_teacher_grid8_1xb64-8e_capdemo.py'),
    dict(key='teacher20', label='teacher, 20% captioned (grid16, 40e)', kind='teacher',
         config=['*teacher*capdemo-cap20*.py'], exclude=['*teacher-to-*']),
    dict(key='scratch', label='scratch student (grid8)', kind='baseline',
         config='baseline_student_grid8_1xb64-6e_capdemo.py'),
    dict(key='scratch_ham', label='scratch HAM student', kind='baseline',
         config='baseline_student-ham_grid8_1xb64-6e_capdemo.py'),
    dict(key='teacher_clip', label='teacher, CLIP BPE vocabulary (grid16, 4e)',
         kind='teacher', config=['baseline_teacher-clipbpe*capdemo.py'],
         why='4 epochs, not 8: its 49,408-way output layer makes a step about 2.4x as long'),
    dict(key='scratch_clip', label='scratch student, full CLIP BPE vocabulary',
         kind='baseline', teacher='teacher_clip',
         config=['baseline_student-clipbpe*capdemo.py']),
    dict(key='scratch_compact', label='scratch compact-vocabulary student', kind='baseline',
         teacher='teacher_clip', config=['baseline*compact*capdemo.py']),
    dict(key='scratch20', label='scratch student, 20% captioned', kind='baseline',
         config=['baseline_student*capdemo-cap20.py']),
    dict(key='wordkd', label='word KD (KL, tau 2)', baseline='scratch',
         config='wordkd_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py'),
    dict(key='rkl', label='reverse KL (MiniLLM), tau 1', baseline='scratch',
         config=['rkl_*capdemo.py']),
    dict(key='skl', label='skew KL (DistiLLM, alpha 0.1)', baseline='scratch',
         config=['skl_*capdemo.py']),
    dict(key='srkl', label='skew reverse KL (DistiLLM, alpha 0.1)', baseline='scratch',
         config=['srkl_*capdemo.py']),
    dict(key='tvd', label='total variation distance', baseline='scratch',
         config=['tvd_*capdemo.py']),
    dict(key='jsd', label='generalised JSD (beta 0.5), references only', baseline='scratch',
         config=['jsd_*capdemo.py']),
    dict(key='seqkd', label='sequence KD (beam 3)', baseline='scratch',
         config='seqkd_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py'),
    dict(key='onpolicy', label='on-policy KD', baseline='scratch',
         config=['onpolicy_*capdemo.py']),
    dict(key='featmse', label='feature MSE (frame tokens)', baseline='scratch',
         config='featmse_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py'),
    dict(key='featcos', label='feature cosine (head states)', baseline='scratch',
         config='featcos_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py'),
    dict(key='relational', label='relational (similarity-preserving)', baseline='scratch',
         config='relational_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py'),
    dict(key='qualityweighted', label='quality-weighted caption loss (no teacher)',
         baseline='scratch', config='qualityweighted_student_grid8_1xb64-6e_capdemo.py'),
    dict(key='twoteachers', label='two teachers (word KD to the grid16+grid8 ensemble)',
         baseline='scratch', teachers=['teacher_grid8'],
         config=['*teachers*capdemo.py', '*two-teacher*capdemo.py', 'multiteacher*capdemo.py']),
    dict(key='sftcaphier', label='SFTCap hierarchy (obj+act+word+concepts)',
         baseline='scratch_ham',
         config='sftcaphier_teacher-to-student_grid16-grid8_1xb64-6e_capdemo.py'),
    dict(key='compact', label='compact vocabulary, word KD from the CLIP-BPE teacher',
         baseline='scratch_compact', teacher='teacher_clip',
         config=['*compact*teacher-to-*capdemo.py', '*teacher-to-*compact*capdemo.py']),
    dict(key='scst_scratch', label='scratch student + SCST', baseline='scratch',
         after='scratch', config='scst_baseline-student_grid8_1xb64-1e_capdemo.py',
         why='fine-tunes the same-seed scratch run'),
    dict(key='scst_sftcaphier', label='SFTCap hierarchy + SCST', baseline='scratch_ham',
         after='sftcaphier', config='scst_sftcaphier-student_grid8_1xb64-2e_capdemo.py',
         why='fine-tunes the same-seed SFTCap hierarchy run'),
    dict(key='scst_jsd_sftcaphier', label='SFTCap hierarchy + SCST + JSD to the teacher',
         baseline='scratch_ham', after='sftcaphier',
         config='scst-jsd_sftcaphier-student_grid8_1xb64-2e_capdemo.py',
         why='fine-tunes the same-seed SFTCap hierarchy run'),
    dict(key='scst_jsd_seqkd', label='sequence KD + SCST + JSD to the teacher',
         baseline='scst_scratch', after='seqkd',
         config='scst-jsd_seqkd-student_grid8_1xb64-1e_capdemo.py',
         why='fine-tunes the same-seed sequence-KD run; its baseline is SCST of the '
             'scratch student, the same schedule without a teacher'),
    dict(key='seqkd20', label='sequence KD, 20% captioned + 80% unlabeled',
         baseline='scratch20', teacher='teacher20', config=['seqkd*capdemo-cap20*.py'],
         why='6e over 4200 samples (840 captioned + 3360 unlabeled) = the 30e of the '
             '20% scratch student in steps'),
    dict(key='onpolicy20', label='on-policy KD, 20% captioned + 80% unlabeled',
         baseline='scratch20', teacher='teacher20', config=['onpolicy*capdemo-cap20*.py'],
         why='captioned + unlabeled videos per epoch: fewer epochs, same steps'),
]
#: configs/kd files that are no rows on purpose (shared bases)
NOT_ROWS = ('_*.py',)
CI_TEXT = ('95% CI: Student t (scipy.stats.t.ppf(0.975, n-1)) of the mean paired '
           'difference over the n seeds both rows have')


def paired_difference(method, baseline, confidence=0.95):
    """Mean paired difference ``method - baseline`` over their common seeds with a CI.

    ``method`` and ``baseline`` map seed -> score. The interval is the Student t one of
    the mean difference (n-1 degrees of freedom); with fewer than 2 common seeds it is
    None and nothing is claimed.
    """
    from scipy import stats
    seeds = sorted(set(method) & set(baseline), key=str)
    diffs = [method[s] - baseline[s] for s in seeds]
    out = dict(seeds=seeds, n=len(diffs), mean=None, sd=None, lo=None, hi=None,
               excludes_zero=None, confidence=confidence)
    if not diffs:
        return out
    out['mean'] = statistics.fmean(diffs)
    if len(diffs) < 2:
        return out
    out['sd'] = statistics.stdev(diffs)
    half = stats.t.ppf(0.5 + confidence / 2, len(diffs) - 1) * out['sd'] / math.sqrt(len(diffs))
    out['lo'], out['hi'] = out['mean'] - half, out['mean'] + half
    out['excludes_zero'] = bool(out['lo'] > 0 or out['hi'] < 0)
    return out


# ----------------------------------------------------------------------------- rows

def resolve_rows(kd_dir=None):
    """(rows, pending, uncovered): each spec matched to its configs.

    ``pending`` holds the specs with no config yet; ``uncovered`` the configs of
    ``kd_dir`` that no row takes (so none is dropped silently).
    """
    kd_dir = kd_dir or osp.join(REPO, KD)
    names = sorted(osp.basename(p) for p in glob.glob(osp.join(kd_dir, '*.py')))
    taken, rows, pending = set(), [], []
    for spec in ROWS:
        cfg = spec['config']
        if isinstance(cfg, str) and '/' in cfg:
            found = [cfg] if osp.isfile(osp.join(REPO, cfg)) else []
        else:
            patterns = [cfg] if isinstance(cfg, str) else cfg
            found = [n for n in names if n not in taken
                     and any(fnmatch.fnmatch(n, p) for p in patterns)
                     and not any(fnmatch.fnmatch(n, p) for p in spec.get('exclude', ()))]
            taken.update(found)
            found = [osp.join(KD, n) for n in found]
        if not found:
            pending.append(spec)
        for path in found:
            row = dict(spec, config=path, kind=spec.get('kind', 'method'))
            if len(found) > 1:
                stem = osp.splitext(osp.basename(path))[0]
                row['key'] = f'{spec["key"]}:{stem.split("_")[0]}'
                row['label'] = f'{spec["label"]} ({stem.split("_")[0]})'
            rows.append(row)
    uncovered = [n for n in names if n not in taken
                 and not any(fnmatch.fnmatch(n, p) for p in NOT_ROWS)]
    return rows, pending, uncovered


def _stem(config):
    return osp.splitext(osp.basename(config))[0]


def _parse_options(options):
    from mmengine.config import DictAction
    parsed = {}
    for item in options or ():
        if '=' not in item:
            raise ConfigError(f'--cfg-options entry {item!r} is not KEY=VALUE.')
        key, value = item.split('=', 1)
        parsed[key] = DictAction._parse_iterable(value)
    return parsed


def _load(config, options=None):
    """A row's config with the table's ``--cfg-options``, checked as tools/train.py checks
    them: a mistaken option stops the table before any run starts."""
    from capdistill.engine.setup import read_config
    return read_config(osp.join(REPO, config), options)


def _checkpoints(model_cfg):
    """Every ``*ckpt`` path a model config reads, except the student's start."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, str) and 'ckpt' in k and k != 'student_ckpt':
                    found.append(v)
                else:
                    walk(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)
    walk(model_cfg)
    return found


def _schedule(cfg):
    lr = cfg.optim_wrapper.get('optimizer', {}).get('lr')
    return f'{cfg.train_cfg.max_epochs}e' + (f' lr {lr:g}' if lr is not None else '')


def describe(rows, options, work_root=DEFAULT_WORK_ROOT):
    """Add schedule, teacher checkpoints and the row each depends on to every row
    (a teacher config without a ``work_dir`` trains into ``work_root/<config name>``)."""
    by_key = {r['key']: r for r in rows}
    for row in rows:
        opts = None if row['kind'] == 'teacher' else options
        cfg = _load(row['config'], opts)
        row['schedule'] = _schedule(cfg)
        row['needs'] = _checkpoints(cfg.model.to_dict() if hasattr(cfg.model, 'to_dict')
                                    else cfg.model)
        row['cache_dir'] = (cfg.model.get('teacher_cache') or {}).get('cache_dir')
        if row['kind'] == 'teacher':
            row['work_dir'] = cfg.get('work_dir') or osp.join(work_root, _stem(row['config']))
            row['checkpoint'] = osp.join(row['work_dir'], f'epoch_{cfg.train_cfg.max_epochs}.pth')
    for row in rows:
        if row.get('after') in by_key:
            row['schedule'] = f'{by_key[row["after"]]["schedule"]} + {row["schedule"]} SCST'
    return by_key


# ----------------------------------------------------------------------------- runs

def _env():
    return dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', HF_HUB_OFFLINE='1',
                PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))


def _run(cmd, log):
    with open(log, 'w') as f:
        proc = subprocess.run(cmd, cwd=REPO, env=_env(), stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f'{" ".join(cmd[1:3])} failed (exit {proc.returncode}); see {log}')


def _last_epoch(wd):
    ckpts = glob.glob(osp.join(wd, 'epoch_*.pth'))
    return max(ckpts, key=lambda p: int(re.findall(r'\d+', osp.basename(p))[0])) if ckpts else None


class Job:
    """One training/testing step of the table; waits for its dependencies."""

    def __init__(self, name, fn, deps=()):
        self.name, self.fn, self.deps = name, fn, list(deps)
        self.done = threading.Event()
        self.error = None
        self.skipped = False

    def __call__(self, slots):
        for dep in self.deps:
            dep.done.wait()
        failed = [d.name for d in self.deps if d.error]
        try:
            if failed:
                raise RuntimeError(f'{self.name}: not run, {", ".join(failed)} failed')
            self.skipped = self.fn(slots)
        except (RuntimeError, FileNotFoundError) as exc:
            self.error = str(exc)
            print(f'error: {exc}', flush=True)
        finally:
            self.done.set()


def student_job(row, seed, root, options, start=None):
    """Train and test one (row, seed); returns True when it had finished before."""
    wd = osp.join(root, _stem(row['config']), f'seed{seed}')
    out = osp.join(wd, 'test.json')

    def fn(slots):
        if osp.isfile(out):
            return True
        os.makedirs(wd, exist_ok=True)
        with slots:
            t0 = time.time()
            opts = [f'randomness.seed={seed}', 'val_cfg=None', 'val_dataloader=None',
                    'val_evaluator=None'] + list(options)
            if start is not None:  # SCST: the same seed's run of the row it fine-tunes
                ckpt = _last_epoch(osp.join(root, _stem(start['config']), f'seed{seed}'))
                if ckpt is None:
                    raise RuntimeError(f'{row["key"]} seed {seed}: no checkpoint of '
                                       f'{start["key"]} seed {seed}')
                opts += [f'model.student_ckpt={ckpt}', f'model.sampler.seed={seed}']
            done = osp.join(wd, 'train.done')
            if not osp.isfile(done):
                # a run stopped part-way resumes from its last checkpoint instead of being
                # tested at the epoch it reached
                resume = ['--resume'] if _last_epoch(wd) else []
                _run([sys.executable, 'tools/train.py', row['config'], '--work-dir', wd,
                      *resume, '--cfg-options', *opts], osp.join(wd, 'train.out'))
                open(done, 'w').close()
            ckpt = _last_epoch(wd)
            t1 = time.time()
            test_opts = [o for o in options if o.startswith('test_')]
            _run([sys.executable, 'tools/test.py', row['config'], ckpt, '--work-dir',
                  osp.join(wd, 'test'), '--out', out]
                 + (['--cfg-options', *test_opts] if test_opts else []),
                 osp.join(wd, 'test.out'))
            with open(osp.join(wd, 'time.json'), 'w') as f:
                json.dump(dict(train_s=t1 - t0, test_s=time.time() - t1), f)
        print(f'{row["key"]} seed {seed}: train {t1 - t0:.0f} s, test '
              f'{time.time() - t1:.0f} s', flush=True)
        return False
    return Job(f'{row["key"]} seed {seed}', fn)


def teacher_jobs(row, root, options):
    """(train job or None, test job) of a teacher row."""
    ckpt_path = row['checkpoint']
    out = osp.join(root, _stem(row['config']), 'test.json')
    train = None
    if not osp.isfile(ckpt_path):
        def train_fn(slots):
            with slots:
                os.makedirs(row['work_dir'], exist_ok=True)
                # two invocations writing one teacher's checkpoints would mix their epochs
                lock = osp.join(row['work_dir'], '.kd_table_training')
                try:
                    os.close(os.open(lock, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    raise RuntimeError(f'{lock} exists: another invocation is training this '
                                       'teacher (delete the file if none is)') from None
                t0 = time.time()
                try:
                    _run([sys.executable, 'tools/train.py', row['config'], '--work-dir',
                          row['work_dir']], osp.join(row['work_dir'], 'kd_table_train.out'))
                finally:
                    os.remove(lock)
            if not osp.isfile(ckpt_path):
                raise RuntimeError(f'{row["config"]} trained but {ckpt_path} is missing; '
                                   'the distilled configs name that file')
            print(f'{row["key"]}: trained in {time.time() - t0:.0f} s', flush=True)
            return False
        train = Job(f'{row["key"]} training', train_fn)

    def test_fn(slots):
        if osp.isfile(out) and osp.getmtime(out) > osp.getmtime(ckpt_path):
            return True
        os.makedirs(osp.dirname(out), exist_ok=True)
        test_opts = [o for o in options if o.startswith('test_')]
        with slots:
            _run([sys.executable, 'tools/test.py', row['config'], ckpt_path, '--work-dir',
                  osp.join(osp.dirname(out), 'test'), '--out', out]
                 + (['--cfg-options', *test_opts] if test_opts else []),
                 osp.join(osp.dirname(out), 'test.out'))
        return False
    return train, Job(f'{row["key"]} test', test_fn, [train] if train else [])


def plan(rows, by_key, seeds, root, options):
    """Every job of the table, dependencies wired; rows that cannot run are reported."""
    jobs, blocked, teacher_train = [], {}, {}
    needed = {p for r in rows if r['kind'] != 'teacher' for p in r['needs']}
    for row in rows:
        if row['kind'] != 'teacher':
            continue
        own = [p for p in needed if osp.normpath(osp.dirname(p)) == osp.normpath(row['work_dir'])]
        if own:  # the file the distilled configs name
            row['checkpoint'] = own[0]
        if not own:
            continue  # no selected row distils from it: an earlier test.json still counts
        train, test = teacher_jobs(row, root, options)
        if train:
            teacher_train[row['checkpoint']] = train
            jobs.append(train)
        jobs.append(test)
    per_seed, fillers = {}, {}
    for row in rows:
        if row['kind'] == 'teacher':
            continue
        deps = []
        for path in row['needs']:
            if path in teacher_train:
                deps.append(teacher_train[path])
            elif not osp.isfile(osp.join(REPO, path)):
                blocked[row['key']] = (f'needs {path}: train the teacher whose work dir that '
                                       'is (python tools/train.py <its config>)')
        if row['key'] in blocked:
            continue
        start = by_key.get(row.get('after'))
        for seed in seeds:
            job = student_job(row, seed, root, options, start)
            job.deps = deps + ([per_seed[(start['key'], seed)]]
                               if start and (start['key'], seed) in per_seed else [])
            # The first run of a teacher cache fills it alone; the others wait and only
            # read: two processes writing one caption's file at once can fail (its
            # temporary file is shared) or leave a half-written file to a reader.
            cache = row.get('cache_dir') and osp.normpath(row['cache_dir'])
            if cache in fillers:
                job.deps.append(fillers[cache])
            elif cache:
                fillers[cache] = job
            job.round = seeds.index(seed)
            per_seed[(row['key'], seed)] = job
            jobs.append(job)
    # Rounds of seeds: every row's first seed before any row's second, so a table stopped
    # part-way has its rows at equal seed counts (jobs take process slots in this order).
    jobs.sort(key=lambda j: getattr(j, 'round', -1))
    return jobs, blocked


def execute(jobs, workers):
    """Run the jobs, at most ``workers`` processes at a time; (ran, skipped, failed)."""
    slots = threading.Semaphore(workers)
    # one thread per job: a job waiting for its dependency holds no process slot
    with cf.ThreadPoolExecutor(max(1, len(jobs))) as pool:
        list(pool.map(lambda j: j(slots), jobs))
    failed = [j for j in jobs if j.error]
    skipped = [j for j in jobs if j.skipped and not j.error]
    return len(jobs) - len(failed) - len(skipped), len(skipped), failed


# ----------------------------------------------------------------------------- results

def cost(config, checkpoint, num_videos):
    """(parameters, median latency in ms per video) of the deployed model, over the first
    ``num_videos`` videos of its config's test split."""
    import numpy as np
    import torch

    from capdistill.apis.inference import init_captioner
    from capdistill.evaluation.cost import count_parameters
    from capdistill.utils import trust_directory
    torch.set_num_threads(1)
    trust_directory(osp.dirname(osp.abspath(checkpoint)))
    cfg = _load(config)
    model = init_captioner(cfg, checkpoint)
    params = count_parameters(model)
    ds = cfg.test_dataloader.dataset
    root = osp.join(REPO, ds.data_root)
    with open(osp.join(root, ds.split_file)) as f:
        videos = json.load(f)[:num_videos]
    folder = osp.join(root, ds.feature_dirs[model.feature_key])
    times = []
    with torch.no_grad():
        for vid in videos:
            feats = torch.from_numpy(np.load(osp.join(folder, f'{vid}.npy'))).float()[None]
            inputs = {model.feature_key: feats,
                      f'{model.feature_key}_mask': torch.ones(feats.shape[:2], dtype=torch.bool)}
            t = time.perf_counter()
            model.generate(inputs)
            times.append(time.perf_counter() - t)
    return params, 1000 * statistics.median(times[1:] or times)


def collect(rows, by_key, root, latency_videos, blocked):
    """results.json content: every seed's metrics, costs and paired differences."""
    out = {}
    for row in rows:
        entry = {k: row.get(k) for k in ('label', 'config', 'kind', 'baseline', 'after',
                                          'why', 'schedule')}
        entry['teacher'] = row.get('teacher', 'teacher') if row['kind'] != 'teacher' else None
        runs, ckpt = {}, None
        if row['kind'] == 'teacher':
            path = osp.join(root, _stem(row['config']), 'test.json')
            found = [(str(_load(row['config']).get('randomness', {}).get('seed', 0)), path)]
            ckpt = row.get('checkpoint')
        else:
            found = [(osp.basename(osp.dirname(p))[4:], p) for p in
                     glob.glob(osp.join(root, _stem(row['config']), 'seed*', 'test.json'))]
        for seed, path in sorted(found, key=lambda x: int(x[0])):
            if not osp.isfile(path):
                continue
            with open(path) as f:
                runs[seed] = dict(json.load(f)['aggregate'])
            timing = osp.join(osp.dirname(path), 'time.json')
            if osp.isfile(timing):
                with open(timing) as f:
                    runs[seed].update(json.load(f))
            ckpt = ckpt or _last_epoch(osp.dirname(path))
        entry['runs'] = runs
        entry['blocked'] = blocked.get(row['key'])
        entry['params'] = entry['latency_ms'] = None
        if runs and ckpt and osp.isfile(ckpt) and not row.get('after'):
            try:
                entry['params'], entry['latency_ms'] = cost(row['config'], ckpt,
                                                            latency_videos)
            except Exception as exc:  # noqa: BLE001 -- the table is written, then the run fails
                entry['cost_error'] = (f'cost of {row["key"]} not measured from {ckpt}: '
                                       f'{type(exc).__name__}: {exc}')
                print(f'error: {entry["cost_error"]}', flush=True)
        out[row['key']] = entry
    for key, entry in out.items():  # SCST keeps the architecture of the run it fine-tunes
        if entry.get('after') in out and entry['runs']:
            entry['params'] = out[entry['after']]['params']
            entry['latency_ms'] = out[entry['after']]['latency_ms']
    add_statistics(out)
    return out


def add_statistics(rows, metric='CIDEr'):
    """Fill every non-baseline row's paired difference to its baseline (in place)."""
    for entry in rows.values():
        base = rows.get(entry.get('baseline') or '')
        if entry.get('kind') != 'method' or not base:
            entry['paired'] = None
            continue
        entry['paired'] = {m: paired_difference(
            {s: r[m] for s, r in entry['runs'].items() if m in r},
            {s: r[m] for s, r in base['runs'].items() if m in r}) for m in (metric, 'Bleu_4')}
    return rows


def _pct(values):
    values = [100 * v for v in values]
    if not values:
        return '–'
    if len(values) == 1:
        return f'{values[0]:.1f}'
    return f'{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}'


def make_table(data):
    """Markdown of a results.json content (``{'meta':..., 'rows':..., 'pending':...}``)."""
    rows = data['rows']
    lines = ['| row | config | schedule | seeds | CIDEr | BLEU-4 | ΔCIDEr vs baseline '
             '[95% CI] | excl. 0 | % teacher CIDEr | params (teacher / row) | '
             'latency ms (row / teacher) |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for key, e in rows.items():
        runs = e['runs']
        cider = [r['CIDEr'] for r in runs.values()]
        teacher = rows.get(e.get('teacher') or '')
        t_cider = [r['CIDEr'] for r in teacher['runs'].values()] if teacher else []
        base = rows.get(e.get('baseline') or '')
        sched = e.get('schedule') or ''
        if base and base.get('schedule') and sched != base['schedule']:
            sched += ' (differs from baseline' + (f': {e["why"]}' if e.get('why') else '') + ')'
        diff, excl = '–', '–'
        p = (e.get('paired') or {}).get('CIDEr')
        if p and p['n'] >= 2:
            diff = (f'{100 * p["mean"]:+.1f} [{100 * p["lo"]:+.1f}, {100 * p["hi"]:+.1f}] '
                    f'(n={p["n"]}, vs {base["label"]})')
            excl = 'yes' if p['excludes_zero'] else 'no'
        elif p and p['n'] == 1:
            diff = f'{100 * p["mean"]:+.1f} (n=1, no CI)'
        frac = (f'{100 * statistics.mean(cider) / statistics.mean(t_cider):.0f}%'
                if cider and t_cider and e['kind'] != 'teacher' else '–')
        params = lat = 'not measured (results.json: cost_error)' if e.get('cost_error') else '–'
        if e.get('params'):
            params = f'{e["params"] / 1e6:.2f} M'
            if teacher and teacher.get('params'):
                params += f' ({teacher["params"] / e["params"]:.1f}x fewer)'
        if e.get('latency_ms'):
            lat = f'{e["latency_ms"]:.1f}'
            if teacher and teacher.get('latency_ms'):
                lat += f' ({e["latency_ms"] / teacher["latency_ms"]:.2f})'
        if not runs:
            cells = [e.get('blocked') or 'not run yet'] + ['–'] * 7
        else:
            b4 = [r['Bleu_4'] for r in runs.values() if 'Bleu_4' in r]
            cells = [str(len(runs)), _pct(cider), _pct(b4), diff, excl, frac, params, lat]
        lines.append(f'| {e["label"]} | `{osp.basename(e["config"])}` | {sched} | '
                     + ' | '.join(cells) + ' |')
    text = '\n'.join(lines) + '\n'
    meta = data.get('meta', {})
    notes = [f'CIDEr and BLEU-4 in %, test split, greedy decoding; mean ± sample sd over '
             f'the seeds. {CI_TEXT}; "excl. 0": whether that interval excludes zero.']
    if meta.get('cfg_options'):
        notes.append('Student runs overridden with `--cfg-options '
                     + ' '.join(meta['cfg_options']) + '` (not the configs\' schedule).')
    if meta.get('data_root', DEFAULT_ROOT) != DEFAULT_ROOT:
        notes.append(f'Data: the capdemo build at `{meta["data_root"]}` (`--data-root`), not '
                     f'{DEFAULT_ROOT}.')
    if data.get('pending'):
        notes.append('Pending (no config in configs/kd yet): '
                     + '; '.join(f'{p["label"]} (`{p["config"]}`)' for p in data['pending'])
                     + '.')
    if data.get('uncovered'):
        notes.append('In configs/kd but not a row of the table: '
                     + ', '.join(f'`{n}`' for n in data['uncovered']) + '.')
    if meta.get('wall_s') is not None:
        notes.append(f'Last invocation: {meta["ran"]} runs in {meta["wall_s"]:.0f} s wall with '
                     f'{meta["workers"]} workers, {meta["skipped"]} finished runs skipped.')
    return text + '\n' + '\n'.join(f'{n}\n' for n in notes)


def update_readme(readme, table):
    """Replace the generated block of ``readme`` (between the kd-table markers)."""
    start, end = '<!-- kd-table:start -->', '<!-- kd-table:end -->'
    with open(readme) as f:
        text = f.read()
    if start not in text or end not in text:
        print(f'warning: {readme} has no {start} ... {end} block; table not copied there')
        return
    head, rest = text.split(start, 1)
    with open(readme, 'w') as f:
        f.write(head + start + '\n' + table + end + rest.split(end, 1)[1])


def write_outputs(data, out_dir, readme):
    table = make_table(data)
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        json.dump(data, f, indent=1)
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write(table)
    if readme:
        update_readme(readme, table)
    print(table)


def parse_args(argv=None):
    from capdistill.utils.cli import int_at_least
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2, 3, 4],
                        help='training seeds of every row (paired across rows)')
    parser.add_argument('--workers', type=int_at_least(1), default=2,
                        help='runs at a time (each a single-thread process)')
    parser.add_argument('--only', nargs='+', metavar='KEY',
                        help='row keys (see --list) or config file names to run; their '
                             'baselines, teachers and start rows come along')
    parser.add_argument('--root', default='work_dirs/kd_table',
                        help='work dirs of the runs (ROOT/CONFIG/seedN); finished runs are '
                             'skipped')
    parser.add_argument('--data-root', default=DEFAULT_ROOT,
                        help='the capdemo build the rows read (make one with '
                             'tools/make_demo_data.py --root DIR); with another than '
                             f'{DEFAULT_ROOT}, teachers train and cache under ROOT/work_dirs')
    parser.add_argument('--out-dir', default=KD, help='where results.json/results.md go')
    parser.add_argument('--readme', default=None,
                        help='README whose kd-table block gets the table (default: '
                             'configs/kd/README.md when --out-dir is configs/kd)')
    parser.add_argument('--latency-videos', type=int_at_least(1), default=21)
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='overrides for every student run (teachers keep their configs; '
                             'test_* keys apply to their tests too), e.g. '
                             'train_cfg.max_epochs=1 train_dataloader.dataset.indices=64')
    parser.add_argument('--table-only', action='store_true',
                        help='write results.json and the table from finished runs; train nothing')
    parser.add_argument('--from-json', metavar='RESULTS_JSON',
                        help='regenerate the markdown from this results.json alone')
    parser.add_argument('--list', action='store_true', help='print the rows and exit')
    return parser.parse_args(argv)


def select(rows, only):
    """The rows asked for plus everything they need (baseline, teacher, start row)."""
    if not only:
        return rows
    by_key = {r['key']: r for r in rows}
    # exact row keys (or a config's file name): 'teacher' is in every teacher-to-student name
    keep = {r['key'] for r in rows if any(
        s in (r['key'], r['key'].split(':')[0], osp.basename(r['config'])) for s in only)}
    if not keep:
        raise ConfigError(f'--only {" ".join(only)} matches no row; see --list')
    grew = True
    while grew:
        extra = {r.get(k) for r in rows if r['key'] in keep
                 for k in ('baseline', 'after')} & set(by_key)
        grew = bool(extra - keep)
        keep |= extra
    return [r for r in rows if r['key'] in keep or (r['kind'] == 'teacher' and any(
        r['key'] in [by_key[k].get('teacher', 'teacher'), *by_key[k].get('teachers', ())]
        for k in keep))]


def move_data_root(rows, data_root, root):
    """Point every row's config at ``data_root`` (copies under ``root/configs``); the
    work root of teachers and caches: ``work_dirs``, or ``root/work_dirs`` when moved, so
    a teacher trained on other data is never read as the table's."""
    if osp.normpath(data_root) == DEFAULT_ROOT:
        return DEFAULT_WORK_ROOT
    if not osp.isfile(osp.join(data_root, 'meta.json')):
        raise ConfigError(f'--data-root {data_root}: no capdemo build there (meta.json '
                          f'missing); make one with python tools/make_demo_data.py --root '
                          f'{data_root}')
    work_root = osp.abspath(osp.join(root, DEFAULT_WORK_ROOT))
    for row in rows:
        row['config'] = config_for_root(row['config'], data_root, osp.join(root, 'configs'),
                                        work_root=work_root)
    return work_root


def main(argv=None):
    args = parse_args(argv)
    os.chdir(REPO)
    import capdistill
    capdistill.setup_runtime()  # compatibility patches (fast config dumps), this process only
    out_dir = osp.join(REPO, args.out_dir)
    readme = args.readme or (osp.join(REPO, KD, 'README.md')
                             if osp.normpath(out_dir) == osp.normpath(osp.join(REPO, KD))
                             else None)
    if args.readme == 'none':
        readme = None
    if args.from_json:
        if not osp.isfile(args.from_json):
            raise FileNotFoundError(f'{args.from_json} not found; write it with a run of '
                                    'this tool first')
        with open(args.from_json) as f:
            data = json.load(f)
        if not isinstance(data, dict) or 'rows' not in data:
            raise ConfigError(f'{args.from_json} has no "rows": not a results.json of this '
                             'tool (re-run with --table-only to rebuild it from the runs)')
        write_outputs(dict(data, rows=add_statistics(data['rows'])), out_dir, readme)
        return
    rows, pending, uncovered = resolve_rows()
    if args.list:
        for r in rows:
            print(f'{r["key"]:<24} {r["kind"]:<8} {r["config"]}')
        for p in pending:
            print(f'{p["key"]:<24} pending  {p["config"]}')
        return
    rows = select(rows, args.only)
    work_root = move_data_root(rows, args.data_root, args.root)
    options = _parse_options(args.cfg_options)
    by_key = describe(rows, options, work_root)
    t0 = time.time()
    jobs, blocked = plan(rows, by_key, args.seeds, args.root, args.cfg_options)
    for key, why in blocked.items():
        print(f'warning: {key} not run: {why}', flush=True)
    ran = skipped = 0
    if not args.table_only:
        ran, skipped, failed = execute(jobs, args.workers)
    wall = time.time() - t0
    data = dict(meta=dict(date=datetime.datetime.now().isoformat(timespec='seconds'),
                          seeds=args.seeds, workers=args.workers, cfg_options=args.cfg_options,
                          data_root=args.data_root,
                          wall_s=None if args.table_only else wall, ran=ran, skipped=skipped,
                          ci=CI_TEXT),
                rows=collect(rows, by_key, args.root, args.latency_videos, blocked),
                pending=[dict(key=p['key'], label=p['label'], config=' / '.join(
                    [p['config']] if isinstance(p['config'], str) else p['config']))
                    for p in pending],
                uncovered=uncovered)
    write_outputs(data, out_dir, readme)
    errors = []
    if not args.table_only:
        print(f'measured: {ran} runs in {wall:.0f} s wall ({wall / 60:.1f} min) with '
              f'{args.workers} workers; {skipped} finished runs skipped', flush=True)
        if failed:
            errors.append(f'{len(failed)} runs failed: ' + '; '.join(j.error for j in failed))
        errors += [f'{key} not run: {why}' for key, why in blocked.items()]
    # an empty cost cell is a broken row, not a blank to overlook
    errors += [e['cost_error'] for e in data['rows'].values() if e.get('cost_error')]
    if errors:
        sys.exit('error: ' + '\nerror: '.join(errors))


if __name__ == '__main__':
    from capdistill.utils.cli import friendly_main
    friendly_main(main)()
