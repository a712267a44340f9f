"""Benchmark capdistill's caption scorer against sequential pycocoevalcap.

Builds a deterministic synthetic caption set the size of an MSR-VTT test split
(2,990 videos x 20 references by default; sentences come from a small grammar,
they are not MSR-VTT captions), then, in one process and both cold (each pays
for its own JVM starts):

1. the baseline: pycocoevalcap's ``PTBTokenizer`` on references and on
   predictions, then ``Bleu(4)``, ``Meteor``, ``Rouge`` and ``Cider`` one after
   another, exactly as pycocoevalcap's ``COCOEvalCap`` does;
2. :func:`capdistill.evaluation.score_captions`.

It prints both wall times, their ratio, the baseline's time per step, and
checks that every score (aggregate and per video) is identical.

Example::

    python tools/analysis/benchmark_metrics.py --num-videos 2990 --refs 20
"""
import argparse
import random
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num-videos', type=int, default=2990)
    parser.add_argument('--refs', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)

    import capdistill
    capdistill.setup_runtime()  # compatibility patches, for this process only
    from capdistill.evaluation import score_captions

    predictions, references = make_caption_set(args.num_videos, args.refs, args.seed)
    print(f'{len(predictions)} videos x {args.refs} references')

    t = time.perf_counter()
    base, base_per_video, times = run_baseline(predictions, references)
    base_total = time.perf_counter() - t

    t = time.perf_counter()
    ours = score_captions(predictions, references, per_video=True)
    ours_total = time.perf_counter() - t

    print('\nbaseline (pycocoevalcap, sequential) per step:')
    for name, sec in times.items():
        print(f'  {name:<10s} {sec:7.2f} s')
    print(f'\n{"":<12s}{"baseline":>10s}{"capdistill":>12s}')
    print(f'{"seconds":<12s}{base_total:>10.2f}{ours_total:>12.2f}')
    print(f'ratio (capdistill / baseline): {ours_total / base_total:.3f}')

    print(f'\n{"metric":<10s}{"baseline":>22s}{"capdistill":>22s}')
    identical = True
    for key, value in base.items():
        mine = ours['aggregate'][key]
        same = mine == value
        identical &= same
        print(f'{key:<10s}{value!r:>22}{mine!r:>22}{"" if same else "  DIFFERENT"}')
    vids = list(references)
    for key, values in base_per_video.items():
        for vid, value in zip(vids, values):
            if ours['per_video'][vid][key] != value:
                identical = False
                print(f'per-video {key} differs for {vid}: {value!r} vs '
                      f'{ours["per_video"][vid][key]!r}')
                break
    print('\nscores identical (aggregate and per video):', identical)
    return 0 if identical else 1


if __name__ == '__main__':
    sys.exit(main())
