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

Every random choice is drawn as one array (captions) or one block of videos
(features), so writing 10,000 videos takes seconds, not the ~100 s per 1,000 videos
of a per-caption loop.
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


def _captions(rng, vids, per_video, verbs, places, tail, zipf):
    """``per_video`` captions per video, every random choice drawn as one array.

    Each caption is ``a <subject> <verb> [<place>] <0-7 Zipf words>``; 70% of a video's
    captions share its subject and verb (so grades and concepts have a consensus).
    """
    n = len(vids) * per_video
    video_subj = rng.integers(len(SUBJECTS), size=len(vids)).repeat(per_video)
    video_verb = rng.integers(len(verbs), size=len(vids)).repeat(per_video)
    subj = np.where(rng.random(n) < 0.7, video_subj, rng.integers(len(SUBJECTS), size=n))
    verb = np.where(rng.random(n) < 0.7, video_verb, rng.integers(len(verbs), size=n))
    place = np.where(rng.random(n) < 0.6, rng.integers(len(places), size=n), -1)
    lengths = rng.integers(0, 8, size=n)
    words = np.asarray(tail)[rng.choice(len(tail), size=int(lengths.sum()), p=zipf)]
    ends = np.cumsum(lengths)
    sentences = []
    for i in range(n):
        parts = ['a', SUBJECTS[subj[i]], verbs[verb[i]]]
        if place[i] >= 0:
            parts.append(places[place[i]])
        parts.extend(words[ends[i] - lengths[i]:ends[i]])
        sentences.append(dict(video_id=vids[i // per_video], caption=' '.join(parts)))
    return sentences


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
    sentences = _captions(rng, vids, captions_per_video, verbs, places, tail, zipf)
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
        for start in range(0, num_videos, 256):  # one random draw per block of videos
            block = vids[start:start + 256]
            feats = rng.standard_normal((len(block), frames, dim),
                                        dtype=np.float32).astype(dtype)
            for v, arr in zip(block, feats):
                np.save(os.path.join(folder, f'{v}.npy'), arr)
    return dict(root=root, videos=num_videos, captions=len(sentences),
                splits={k: sum(1 for v in vids if split[v] == k)
                        for k in ('train', 'validate', 'test')})


def main(argv=None):
    from capdistill.utils.cli import int_at_least
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--root', required=True)
    p.add_argument('--num-videos', type=int, default=10000)
    p.add_argument('--captions-per-video', type=int_at_least(1), default=20)
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
