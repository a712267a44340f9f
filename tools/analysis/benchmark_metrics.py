"""Benchmark capdistill's caption scorer against sequential pycocoevalcap.

Builds a deterministic synthetic caption set the size of an MSR-VTT test split
(2,990 videos x 20 references by default; sentences come from a small grammar,
they are not MSR-VTT captions), then, in one process, under each condition:

* ``idle``: the benchmark alone on two CPUs;
* ``busy``: the same two CPUs with a busy-loop process pinned to the second one
  (started and stopped by the benchmark), i.e. one core left for everything;

it times

1. the baseline: pycocoevalcap's ``PTBTokenizer`` on references and on
   predictions, then ``Bleu(4)``, ``Meteor``, ``Rouge`` and ``Cider`` one after
   another, exactly as pycocoevalcap's ``COCOEvalCap`` does (every call cold);
2. ``cold``: :func:`capdistill.evaluation.score_captions` in a process that has
   not scored before (its own JVM starts, empty caches);
3. ``jvm started early``: the same once METEOR's JVM is loaded, as in a test run,
   where :class:`CaptionMetric` starts it with the first batch and it loads while
   the model decodes;
4. ``next evaluation``: the same references with new predictions, as in the
   validation of a later epoch (JVM running, reference tokens cached).

It prints the wall times, their ratios to the baseline, the baseline's time per
step, and checks that every score (aggregate and per video) of 2 and 3 is
identical to the baseline's.

Example::

    OMP_NUM_THREADS=1 python tools/analysis/benchmark_metrics.py --num-videos 2990 --refs 20
"""
import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time

SUBJECTS = ['a man', 'a woman', 'a boy', 'a girl', 'a dog', 'a cat', 'two people',
            'a group of kids', 'the chef', 'a player', 'someone', 'a person',
            'an old man', 'a young woman', 'the band', 'a cartoon character']
VERBS_OBJ = [('is cooking', ['pasta', 'an egg', 'some vegetables', 'a meal']),
             ('is playing', ['a guitar', 'football', 'the piano', 'a video game']),
             ('is riding', ['a bike', 'a horse', 'a skateboard', 'a car']),
             ('is talking about', ['a movie', 'the news', 'a phone', 'cars']),
             ('is showing', ['how to draw', 'a new dress', 'a recipe', 'makeup']),
             ('is throwing', ['a ball', 'a stick', 'a frisbee', 'rocks']),
             ('is watching', ['tv', 'a show', 'the game', 'a video'])]
INTRANSITIVE = ['is running', 'is dancing', 'is singing', 'is swimming', 'is laughing',
                'is walking', 'is sleeping', 'is jumping']
PLACES = ['in the kitchen', 'on the stage', 'in a park', 'on the street', 'at home',
          'on a field', 'in a room', 'near the water', 'in a car', '']
ADVERBS = ['', '', '', 'quickly', 'happily', 'slowly', 'loudly']


def make_sentence(rng: random.Random) -> str:
    """One caption-like sentence from the grammar."""
    words = [rng.choice(SUBJECTS)]
    if rng.random() < 0.7:
        verb, objects = rng.choice(VERBS_OBJ)
        words += [verb, rng.choice(objects)]
    else:
        words.append(rng.choice(INTRANSITIVE))
    words += [rng.choice(ADVERBS), rng.choice(PLACES)]
    sentence = ' '.join(w for w in words if w)
    if rng.random() < 0.3:
        sentence = sentence[0].upper() + sentence[1:] + '.'
    return sentence


def make_caption_set(num_videos=2990, num_refs=20, seed=0):
    """Deterministic ``(predictions, references)`` keyed by ``video<i>``."""
    rng = random.Random(seed)
    predictions, references = {}, {}
    for i in range(num_videos):
        vid = f'video{7010 + i}'
        references[vid] = [make_sentence(rng) for _ in range(num_refs)]
        predictions[vid] = make_sentence(rng)
    return predictions, references


def new_predictions(references, seed):
    """Other predictions for the same videos (a later epoch's)."""
    rng = random.Random(seed)
    return {vid: make_sentence(rng) for vid in references}


class BusyCore:
    """A busy-loop process pinned to one CPU while the context is open."""

    def __init__(self, cpu):
        self.cpu = cpu
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, '-c', 'while True: pass'])
        os.sched_setaffinity(self.proc.pid, {self.cpu})
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def two_cpus():
    """Pin this process (and the JVMs it starts) to two of its CPUs; returns them."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise RuntimeError(f'the busy-core comparison needs two CPUs; this process may '
                           f'use {cpus} only (run it without a one-CPU affinity mask).')
    os.sched_setaffinity(0, set(cpus[:2]))
    return cpus[:2]


def run_baseline(predictions, references):
    """pycocoevalcap, step by step; returns (scores, per_video, seconds per step)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    times = {}
    t = time.perf_counter()
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{'caption': c} for c in v] for k, v in references.items()})
    res = tokenizer.tokenize({k: [{'caption': predictions[k]}] for k in references})
    times['tokenize'] = time.perf_counter() - t
    scores, per_video = {}, {}
    for name, make in (('Bleu', lambda: Bleu(4)), ('METEOR', Meteor),
                       ('ROUGE_L', Rouge), ('CIDEr', Cider)):
        t = time.perf_counter()
        scorer = make()
        score, video_scores = scorer.compute_score(gts, res, **(
            {'verbose': 0} if name == 'Bleu' else {}))
        if name == 'METEOR':
            del scorer  # stops its JVM, as COCOEvalCap does when it drops it
        times[name] = time.perf_counter() - t
        if name == 'Bleu':
            for n in range(4):
                scores[f'Bleu_{n + 1}'] = score[n]
                per_video[f'Bleu_{n + 1}'] = list(video_scores[n])
        else:
            scores[name] = score
            per_video[name] = list(video_scores)
    return scores, per_video, times


def _identical(base, base_per_video, ours, vids, label):
    same = True
    for key, value in base.items():
        if ours['aggregate'][key] != value:
            same = False
            print(f'{label}: {key} differs: {value!r} vs {ours["aggregate"][key]!r}')
    for key, values in base_per_video.items():
        for vid, value in zip(vids, values):
            if ours['per_video'][vid][key] != value:
                same = False
                print(f'{label}: per-video {key} differs for {vid}: {value!r} vs '
                      f'{ours["per_video"][vid][key]!r}')
                break
    return same


def _cpu_seconds():
    """CPU seconds of this process, its reaped children and the live METEOR JVM."""
    from capdistill.evaluation import caption_scorer as cs
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = time.process_time() + children.ru_utime + children.ru_stime
    proc = cs._METEOR.proc
    if proc is not None and proc.poll() is None:
        with open(f'/proc/{proc.pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    return total


class _Timer:
    """Wall and CPU seconds of a block (CPU: see :func:`_cpu_seconds`)."""

    def __init__(self, out, key):
        self.out, self.key = out, key

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), _cpu_seconds()

    def __exit__(self, *exc):
        self.out[self.key] = time.perf_counter() - self.wall
        self.out[self.key + '_cpu'] = _cpu_seconds() - self.cpu


def run_condition(predictions, references, later_predictions):
    """The baseline and the three capdistill cases once; returns seconds and checks."""
    from capdistill.evaluation import caption_scorer as cs
    from capdistill.evaluation import score_captions
    vids = list(references)
    out = {}
    with _Timer(out, 'baseline'):
        base, base_per_video, out['baseline_steps'] = run_baseline(predictions, references)

    cs.shutdown_meteor()
    cs.clear_caches()
    with _Timer(out, 'cold'):
        cold = score_captions(predictions, references, per_video=True)

    cs.shutdown_meteor()
    cs.clear_caches()
    cs.prestart_meteor()
    cs._METEOR.compute_score({'x': ['a']}, {'x': ['a']}, ['x'])  # wait until loaded
    with _Timer(out, 'early'):
        early = score_captions(predictions, references, per_video=True)

    with _Timer(out, 'next'):
        score_captions(later_predictions, references)
    out['identical'] = (_identical(base, base_per_video, cold, vids, 'cold')
                        and _identical(base, base_per_video, early, vids, 'early'))
    out['scores'] = base
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num-videos', type=int, default=2990)
    parser.add_argument('--refs', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--conditions', nargs='+', default=['idle', 'busy'],
                        choices=['idle', 'busy'])
    parser.add_argument('--out', help='write the measurements as json here')
    args = parser.parse_args(argv)
    if args.num_videos < 1 or args.refs < 1:
        parser.error('--num-videos and --refs must be at least 1')

    import capdistill
    capdistill.setup_runtime()  # compatibility patches, for this process only

    predictions, references = make_caption_set(args.num_videos, args.refs, args.seed)
    later = new_predictions(references, args.seed + 1)
    cpus = two_cpus()
    print(f'{len(predictions)} videos x {args.refs} references, CPUs {cpus}')

    results = {}
    for condition in args.conditions:
        if condition == 'busy':
            with BusyCore(cpus[1]):
                results[condition] = run_condition(predictions, references, later)
        else:
            results[condition] = run_condition(predictions, references, later)
        r = results[condition]
        print(f'\n[{condition}] baseline (pycocoevalcap, sequential) per step: ' + ', '.join(
            f'{name} {sec:.2f} s' for name, sec in r['baseline_steps'].items()), flush=True)

    print('\nwall seconds (ratio to pycocoevalcap); CPU seconds below each, all processes')
    print('| second core | pycocoevalcap | cold | JVM started early | next evaluation |'
          '\n|---|---|---|---|---|')
    for condition, r in results.items():
        for unit, suffix in (('wall', ''), ('CPU', '_cpu')):
            base = r['baseline' + suffix]
            cells = ' | '.join(f'{r[k + suffix]:.2f} ({r[k + suffix] / base:.2f}x)'
                               for k in ('cold', 'early', 'next'))
            print(f'| {condition}, {unit} s | {r["baseline" + suffix]:.2f} | {cells} |')
    identical = all(r['identical'] for r in results.values())
    print('\nscores identical to pycocoevalcap (aggregate and per video):', identical)
    print('scores: ' + ', '.join(f'{k} {v:.4f}' for k, v in
                                 next(iter(results.values()))['scores'].items()))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)
    return 0 if identical else 1


if __name__ == '__main__':
    from capdistill.utils.cli import friendly_main
    sys.exit(friendly_main(main)())
