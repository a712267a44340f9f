"""Build the capdemo dataset on disk in the reference (SFTCap) layout.

capdemo is procedurally generated: rendered shapes, captions from a small grammar.
It is not MSVD, MSR-VTT or any real data set; it exists so that training,
distillation and evaluation run end to end on a laptop, in seconds.
"""
import json
import os
import os.path as osp
import sys
import time

import numpy as np

from . import render

NAME = 'capdemo'
FORMAT_VERSION = 1
# (attribute, value, action): every video with an object that has this attribute
# value and does this action is in the test split, so train never sees the pair.
HELD_OUT = (('colour', 'yellow', 'spin'), ('colour', 'green', 'left'),
            ('shape', 'triangle', 'bounce'))
FEATURES = {'grid16': dict(type='PixelGridEncoder', grid=16, input_size=64),
            'grid8': dict(type='PixelGridEncoder', grid=8, input_size=64)}
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)   # train, valid, test
# captioned fractions of the train split written by default (the 20%-captioned study)
CAPTIONED_FRACTIONS = (0.2,)
TWO_OBJECT_FRACTION = 0.35
CAPTIONS_PER_VIDEO = 5

_README = """capdemo: PROCEDURALLY GENERATED demo data for capdistill (not a real data set).

Every video was rendered by capdistill/datasets/demo/render.py from seed {seed}:
one or two flat shapes (circle, square, triangle, cross) in six colours and two sizes,
doing one action each (moving left/right/up/down, bouncing, growing, shrinking,
spinning), {frames} frames of {size}x{size} px at {fps} fps, MPEG-4 mp4. The {per}
reference captions per video come from a small grammar with synonyms.

Videos: {n} ({train} train / {valid} valid / {test} test).
Held-out attribute-action combinations (only in test, never in train or valid):
{held}
Features (extracted from the mp4 files by capdistill.datasets.extraction.extract_features,
{frames} frames per video):
  visual/grid16/frame_feature/<vid>.npy  (16, 768)  teacher ("fine": 16x16 colour grid)
  visual/grid8/frame_feature/<vid>.npy   (16, 192)  student ("coarse": 8x8 colour grid)

Regenerate with: python tools/make_demo_data.py --root {root_hint} --seed {seed} --num-videos {n}
"""


def _has_held_out(obj):
    return [f'{attr}={value}+{action}' for attr, value, action in HELD_OUT
            if obj[attr] == value and obj['action'] == action]


def _plan(seed, num_videos):
    """All random choices of the data set, from one seed."""
    rng = np.random.default_rng(seed)
    videos = []
    for _ in range(num_videos):
        count = 2 if rng.random() < TWO_OBJECT_FRACTION else 1
        videos.append([render.sample_object(rng) for _ in range(count)])
    # Make sure every held-out combination occurs a few times, even in small sets.
    per_combo = max(1, int(round(0.03 * num_videos)))
    free = list(rng.permutation(num_videos))
    for attr, value, action in HELD_OUT:
        for _ in range(min(per_combo, len(free))):
            index = int(free.pop())
            obj = videos[index][0]
            obj[attr] = value
            obj['action'] = action
            if action == 'spin' and obj['shape'] == 'circle':
                obj['shape'] = 'square'
    ids = [f'demo{i:05d}' for i in range(num_videos)]

    held = [i for i, objs in enumerate(videos) if any(_has_held_out(o) for o in objs)]
    rest = [i for i in rng.permutation(num_videos) if i not in set(held)]
    n_test = max(len(held), int(round(SPLIT_FRACTIONS[2] * num_videos)))
    n_valid = int(round(SPLIT_FRACTIONS[1] * num_videos))
    n_extra_test = n_test - len(held)
    split = {}
    for i in held:
        split[i] = 'test'
    for k, i in enumerate(rest):
        if k < n_extra_test:
            split[int(i)] = 'test'
        elif k < n_extra_test + n_valid:
            split[int(i)] = 'valid'
        else:
            split[int(i)] = 'train'

    records = []
    for i, objs in enumerate(videos):
        tracks = render.plan_video(objs, rng)
        background = float(rng.uniform(0, 35))
        jitter = [rng.normal(0, 10, 3) for _ in objs]
        captions = render.make_captions(objs, rng, CAPTIONS_PER_VIDEO)
        records.append(dict(video_id=ids[i], split=split[i], objects=objs, tracks=tracks,
                            background=background, jitter=jitter, captions=captions))
    return records


def _paths(root):
    return dict(
        root=root,
        raw_videos=osp.join(root, 'raw_videos'),
        caption_file=osp.join(root, 'language', f'{NAME}_caption.json'),
        split_files={s: osp.join(root, 'splits', f'{NAME}_{s}_list.json')
                     for s in ('train', 'valid', 'test')},
        feature_dirs={k: osp.join(root, 'visual', k, 'frame_feature') for k in FEATURES},
        meta_file=osp.join(root, 'meta.json'),
        readme=osp.join(root, 'README.txt'))


def _complete(paths, seed, num_videos):
    try:
        with open(paths['meta_file'], encoding='utf-8') as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    if (meta.get('seed'), meta.get('num_videos'), meta.get('format_version')) != (
            seed, num_videos, FORMAT_VERSION):
        return None
    if not osp.isfile(paths['caption_file']):
        return None
    ids = list(meta['videos'])
    for folder in paths['feature_dirs'].values():
        if not all(osp.isfile(osp.join(folder, f'{vid}.npy')) for vid in ids):
            return None
    return meta


def _clear(paths):
    """Remove what an earlier build wrote (only capdemo's own files)."""
    for folder, ext in [(paths['raw_videos'], '.mp4')] + [
            (d, '.npy') for d in paths['feature_dirs'].values()]:
        if osp.isdir(folder):
            for name in os.listdir(folder):
                if name.startswith('demo') and name.endswith(ext):
                    os.remove(osp.join(folder, name))
    # a word vocabulary built from the old captions would otherwise be reused (also the
    # vocab-<name>.json of configs that build theirs from a captioned fraction)
    folder = osp.dirname(paths['caption_file'])
    vocabs = [osp.join(folder, n) for n in (os.listdir(folder) if osp.isdir(folder) else [])
              if n.startswith('vocab-') and n.endswith('.json')]
    vocab = osp.join(folder, 'vocab.json')
    for path in [paths['meta_file'], paths['caption_file'], *paths['split_files'].values(),
                 vocab, vocab + '.meta.json', *vocabs]:
        if osp.exists(path):
            os.remove(path)


def captioned_split(train_ids, fraction, seed=0):
    """``(captioned, unlabeled)``: a ``fraction`` of ``train_ids`` that keeps its captions
    and the rest, both in the ids' order. Deterministic in ``(seed, fraction)`` and
    independent of the ids' order; at least one video keeps its captions."""
    if not 0 < fraction <= 1:
        raise ValueError(f'captioned_fraction must be in (0, 1], not {fraction!r}.')
    ids = sorted(train_ids)
    rng = np.random.default_rng([seed, int(round(fraction * 10000))])
    count = max(1, int(round(fraction * len(ids))))
    keep = {ids[i] for i in rng.permutation(len(ids))[:count]}
    return ([v for v in train_ids if v in keep], [v for v in train_ids if v not in keep])


def captioned_split_files(root, fraction):
    """The split files of a captioned fraction: ``capdemo_train-cap20_list.json`` (keeps
    its captions) and ``capdemo_train-unl80_list.json`` (used without) for 0.2."""
    pct = int(round(fraction * 100))
    folder = osp.join(root, 'splits')
    return (osp.join(folder, f'{NAME}_train-cap{pct}_list.json'),
            osp.join(folder, f'{NAME}_train-unl{100 - pct}_list.json'))


def write_captioned_splits(root, fractions, seed, train_ids):
    """Write the split files of every captioned fraction (unchanged files are kept)."""
    out = {}
    for fraction in fractions:
        files = captioned_split_files(root, fraction)
        for path, ids in zip(files, captioned_split(train_ids, fraction, seed)):
            try:
                with open(path, encoding='utf-8') as f:
                    same = json.load(f) == ids
            except (OSError, ValueError):
                same = False
            if not same:
                _write_json(path, ids)
        out[fraction] = files
    return out


def _write_json(path, obj, indent=None):
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(obj, f, indent=indent)
    os.replace(tmp, path)


class _Progress:
    """A line every ``every`` seconds with the count and an ETA, for steps of many seconds."""

    def __init__(self, label, total, every=5.0):
        self.label, self.total, self.every = label, total, every
        self.count, self.start = 0, time.perf_counter()
        self.last = self.start

    def step(self):
        self.count += 1
        now = time.perf_counter()
        if now - self.last >= self.every and self.count < self.total:
            self.last = now
            rate = self.count / (now - self.start)
            print(f'{self.label}: {self.count}/{self.total}, {now - self.start:.0f} s, '
                  f'ETA {(self.total - self.count) / rate:.0f} s', flush=True)

    def done(self):
        if self.last > self.start:  # said something before: say it finished
            print(f'{self.label}: {self.total}/{self.total} in '
                  f'{time.perf_counter() - self.start:.0f} s', flush=True)


def make_demo_dataset(root='data/capdemo', seed=0, num_videos=1200, force=False,
                      workers=1, verbose=True, captioned_fractions=CAPTIONED_FRACTIONS):
    """Render, caption, split and extract features of the capdemo data set.

    Deterministic from ``seed``. When ``root`` already holds a complete build with
    the same seed and size, returns at once (unless ``force``). For every fraction of
    ``captioned_fractions`` the train split is divided into a captioned part and an
    unlabeled rest (:func:`captioned_split_files`, deterministic in the seed), written
    even when nothing else has to be done.

    Returns:
        dict with ``root``, ``raw_videos``, ``caption_file``, ``split_files``,
        ``feature_dirs``, ``meta_file``, ``num_videos``, ``num_captions``,
        ``splits`` (counts), ``held_out``, ``feature_dims``, ``skipped`` (True when
        nothing had to be done), ``timings`` (seconds) and ``captioned_splits``
        (fraction -> (captioned, unlabeled) split files).
    """
    from capdistill.datasets.extraction import extract_features

    start = time.perf_counter()
    root = str(root)
    paths = _paths(root)
    result = dict(paths, num_videos=num_videos, held_out=[list(h) for h in HELD_OUT],
                  feature_dims={k: cfg['grid'] ** 2 * 3 for k, cfg in FEATURES.items()})
    meta = None if force else _complete(paths, seed, num_videos)
    if meta is not None:
        train = [v for v, info in meta['videos'].items() if info['split'] == 'train']
        result.update(skipped=True, num_captions=meta['num_captions'],
                      splits=meta['split_counts'],
                      captioned_splits=write_captioned_splits(root, captioned_fractions,
                                                              seed, train),
                      timings=dict(total=time.perf_counter() - start))
        if verbose:
            print(f'capdemo: complete in {root} ({num_videos} videos); nothing to do')
        return result

    # Anything else (other seed/size, a partial build) starts from a clean slate,
    # except that identical videos and features of an interrupted build are kept.
    old = None
    if osp.isfile(paths['meta_file']):
        try:
            with open(paths['meta_file'], encoding='utf-8') as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = None
    if force or old is None or (old.get('seed'), old.get('num_videos'),
                                old.get('format_version')) != (seed, num_videos,
                                                               FORMAT_VERSION):
        _clear(paths)

    records = _plan(seed, num_videos)
    os.makedirs(paths['raw_videos'], exist_ok=True)
    t0 = time.perf_counter()
    items = []
    progress = _Progress('capdemo: rendering videos', len(records))
    for rec in records:
        progress.step()
        path = osp.join(paths['raw_videos'], f'{rec["video_id"]}.mp4')
        if not osp.isfile(path):
            frames = render.render_video(rec['objects'], rec['tracks'], rec['background'],
                                         rec['jitter'])
            tmp = path[:-4] + '.tmp.mp4'
            render.write_mp4(tmp, frames)
            os.replace(tmp, path)
        items.append((rec['video_id'], path))
    render_time = time.perf_counter() - t0
    progress.done()

    splits = {s: [r['video_id'] for r in records if r['split'] == s]
              for s in ('train', 'valid', 'test')}
    sentences = [dict(video_id=r['video_id'], caption=c) for r in records for c in r['captions']]
    # The meta file is written first and marks the build's identity; completeness is
    # judged by the features, so an interrupted build resumes where it stopped.
    meta = dict(
        name=NAME, format_version=FORMAT_VERSION, seed=seed, num_videos=num_videos,
        description='procedurally generated demo data (rendered shapes, grammar '
                    'captions); not a real video captioning data set',
        frames=render.NUM_FRAMES, frame_size=render.SIZE, fps=render.FPS,
        held_out=[dict(attribute=a, value=v, action=act) for a, v, act in HELD_OUT],
        split_counts={s: len(v) for s, v in splits.items()},
        num_captions=len(sentences), vocabulary=render.vocabulary(),
        features={k: dict(encoder=cfg, dim=cfg['grid'] ** 2 * 3)
                  for k, cfg in FEATURES.items()},
        videos={r['video_id']: dict(split=r['split'], objects=r['objects']) for r in records})
    _write_json(paths['meta_file'], meta, indent=1)

    timings = dict(render=render_time)
    summaries = {}
    for key, cfg in FEATURES.items():
        print(f'capdemo: {key} features of {len(items)} videos', flush=True)
        summaries[key] = extract_features(
            items, dict(cfg), paths['feature_dirs'][key], num_frames=render.NUM_FRAMES,
            batch_size=256, workers=workers, progress=sys.stderr.isatty(), verbose=False)
        timings[f'extract_{key}'] = summaries[key]['wall_time']
        if summaries[key]['failed']:
            raise RuntimeError(f'capdemo: {summaries[key]["failed"]} rendered videos could '
                               f'not be read back; see {summaries[key]["failures_file"]}')

    _write_json(paths['caption_file'], dict(
        info=dict(description=meta['description'], name=NAME, seed=seed),
        sentences=sentences,
        videos=[dict(video_id=r['video_id'], split=r['split']) for r in records]))
    for split, ids in splits.items():
        _write_json(paths['split_files'][split], ids)
    result['captioned_splits'] = write_captioned_splits(root, captioned_fractions, seed,
                                                        splits['train'])
    held = '\n'.join(f'  {v} ({a}) + {act}' for a, v, act in HELD_OUT)
    with open(paths['readme'], 'w', encoding='utf-8') as f:
        f.write(_README.format(seed=seed, frames=render.NUM_FRAMES, size=render.SIZE,
                               fps=render.FPS, per=CAPTIONS_PER_VIDEO, n=num_videos,
                               held=held, root_hint=root, **meta['split_counts']))
    timings['total'] = time.perf_counter() - start
    result.update(skipped=False, num_captions=len(sentences), splits=meta['split_counts'],
                  timings=timings,
                  extraction={k: dict(frames_per_s=s['frames_per_s'],
                                      wall_encoder_ratio=s['wall_encoder_ratio'])
                              for k, s in summaries.items()})
    if verbose:
        print(f'capdemo: {num_videos} videos ({meta["split_counts"]}) in {root}: '
              f'render+encode mp4 {render_time:.1f} s, features grid16 '
              f'{timings["extract_grid16"]:.1f} s, grid8 {timings["extract_grid8"]:.1f} s, '
              f'total {timings["total"]:.1f} s')
    return result
