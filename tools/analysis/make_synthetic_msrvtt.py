"""Write a synthetic MSR-VTT-size data set in the reference layout (for scale benchmarks).

    python tools/analysis/make_synthetic_msrvtt.py --root /tmp/synth_msrvtt_10k --num-videos 10000

Not a real data set: captions are drawn from a word list with a Zipf law (so the
vocabulary, caption lengths and concepts behave like a real corpus) and features are
random. Layout and sizes follow MSR-VTT as the SFTCap release has it:

* ``language/msrvtt_caption.json``: ``sentences`` (20 captions per video) and
  ``videos`` (``video_id``, ``split``);
* ``splits/msrvtt_{train,valid,test}_list.json``: 6,513 / 497 / 2,990 videos at 10,000
  (the same fractions for other sizes);
* ``visual/clip_b32/frame_feature/<vid>.npy`` ``(15, 512)`` and
  ``visual/clip_l14/frame_feature/<vid>.npy`` ``(15, 768)``, float16 by default
  (``--dtype float32`` doubles the ~38 MB per 1,000 videos).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

SUBJECTS = ('man woman person boy girl child people group team player singer dog cat car '
            'chef dancer crowd student reporter band').split()
VERBS = ('is talking is singing is dancing is cooking is playing is running is driving '
         'is showing is explaining is walking is riding is swimming is eating is fighting '
         'is laughing is reading is drawing is jumping').split(' is ')
PLACES = ('in a kitchen on a stage in a room on the street in a car on a field in the '
          'water on a table in a studio at a party').split(' in ')


def _words(rng, n):
    """``n`` pronounceable pseudo-words (for the long Zipf tail of the vocabulary)."""
    cons, vow = list('bcdfghklmnprstvwz'), list('aeiou')
    out = set()
    while len(out) < n:
        k = rng.integers(2, 4)
        out.add(''.join(rng.choice(cons) + rng.choice(vow) for _ in range(k)))
    return sorted(out)


def make(root, num_videos=10000, captions_per_video=20, frames=15, dtype='float16',
         seed=0):
    """Write the data set under ``root``; returns a summary dict."""
    rng = np.random.default_rng(seed)
    tail = _words(rng, 3000)
    zipf = 1.0 / np.arange(1, len(tail) + 1)
    zipf /= zipf.sum()
    verbs = [v if v.startswith('is ') else 'is ' + v for v in VERBS]
    places = [p if p.startswith(('in ', 'on ', 'at ')) else 'in ' + p for p in PLACES]
    vids = [f'video{i}' for i in range(num_videos)]
    n_test = round(num_videos * 2990 / 10000)
    n_val = round(num_videos * 497 / 10000)
    split = {v: 'train' for v in vids[:num_videos - n_val - n_test]}
    split.update({v: 'validate' for v in vids[num_videos - n_val - n_test:num_videos - n_test]})
    split.update({v: 'test' for v in vids[num_videos - n_test:]})
    sentences = []
    for v in vids:
        subj = SUBJECTS[rng.integers(len(SUBJECTS))]
        verb = verbs[rng.integers(len(verbs))]
        for _ in range(captions_per_video):
            words = ['a', subj if rng.random() < 0.7 else SUBJECTS[rng.integers(len(SUBJECTS))],
                     verb if rng.random() < 0.7 else verbs[rng.integers(len(verbs))]]
            if rng.random() < 0.6:
                words.append(places[rng.integers(len(places))])
            words += list(rng.choice(tail, size=rng.integers(0, 8), p=zipf))
            sentences.append(dict(video_id=v, caption=' '.join(words)))
    os.makedirs(os.path.join(root, 'language'), exist_ok=True)
    os.makedirs(os.path.join(root, 'splits'), exist_ok=True)
    with open(os.path.join(root, 'language', 'msrvtt_caption.json'), 'w') as f:
        json.dump(dict(sentences=sentences,
                       videos=[dict(video_id=v, split=split[v]) for v in vids]), f)
    for name, key in (('train', 'train'), ('valid', 'validate'), ('test', 'test')):
        with open(os.path.join(root, 'splits', f'msrvtt_{name}_list.json'), 'w') as f:
            json.dump([v for v in vids if split[v] == key], f)
    for enc, dim in (('clip_b32', 512), ('clip_l14', 768)):
        folder = os.path.join(root, 'visual', enc, 'frame_feature')
        os.makedirs(folder, exist_ok=True)
        for v in vids:
            np.save(os.path.join(folder, f'{v}.npy'),
                    rng.standard_normal((frames, dim), dtype=np.float32).astype(dtype))
    return dict(root=root, videos=num_videos, captions=len(sentences),
                splits={k: sum(1 for v in vids if split[v] == k)
                        for k in ('train', 'validate', 'test')})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--root', required=True)
    p.add_argument('--num-videos', type=int, default=10000)
    p.add_argument('--captions-per-video', type=int, default=20)
    p.add_argument('--dtype', choices=['float16', 'float32'], default='float16')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    if args.num_videos < 10:
        raise ValueError('--num-videos must be at least 10')
    start = time.perf_counter()
    info = make(args.root, args.num_videos, args.captions_per_video, dtype=args.dtype,
                seed=args.seed)
    print(f'{info["videos"]} videos, {info["captions"]} captions, splits {info["splits"]} '
          f'-> {info["root"]} ({time.perf_counter() - start:.1f} s)')
    return 0


if __name__ == '__main__':
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    from capdistill.utils.cli import friendly_main
    sys.exit(friendly_main(main)())
