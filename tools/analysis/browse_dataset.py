"""Look at a config's dataset before training on it.

    python tools/analysis/browse_dataset.py CONFIG [--split train] [--top 15]

Prints, per split (train/val/test, or the one given): videos and samples, captions per
video, a text histogram of caption lengths, the vocabulary size, the most frequent
object and action concepts, and the split ids without captions or features.
"""
import argparse
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

SPLITS = dict(train='train_dataloader', val='val_dataloader', test='test_dataloader')


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('--split', choices=sorted(SPLITS), help='one split only')
    p.add_argument('--top', type=int, default=15, help='concepts listed')
    from capdistill.utils.cli import add_cfg_options
    add_cfg_options(p, 'train_dataloader.dataset.data_root=X')
    return p.parse_args()


def histogram(values, width=40):
    """Text histogram lines of integer ``values``."""
    counts = Counter(values)
    peak = max(counts.values())
    return [f'  {k:3d} | {"#" * max(1, round(width * n / peak)):{width}s} {n}'
            for k, n in sorted(counts.items())]


def browse(name, ds_cfg, top):
    import os.path as osp

    from capdistill.datasets.annotations import DataError, load_captions
    from capdistill.datasets.preprocess import load_preprocessed
    from capdistill.registry import DATASETS

    ds_cfg = dict(ds_cfg, skip_missing=True, pipeline=[], lazy_init=True)
    ds = DATASETS.build(ds_cfg)
    captions = load_captions(ds.ann_file)
    ids = ds._split_ids(captions)
    print(f'== {name}: {ds.split_file or ds.split} ==')
    no_caps = [v for v in ids if v not in captions]
    h5 = ds._h5_keys()
    no_feats = {}
    for key in ds.feature_dirs:
        miss = []
        for vid in ids:
            src = ds._feature_source(key, vid)
            if (vid not in h5[key]) if key in h5 else not osp.isfile(src):
                miss.append(vid)
        no_feats[key] = miss
    present = [v for v in ids if v in captions]
    caps = [c for v in present for c in captions[v]]
    print(f'videos: {len(ids)} in the split, {len(present)} with captions; '
          f'captions: {len(caps)}')
    per_video = [len(captions[v]) for v in present]
    if per_video:
        print(f'captions per video: min {min(per_video)}, mean '
              f'{sum(per_video) / len(per_video):.1f}, max {max(per_video)}')
    lengths = [len(ds.tokenizer.encode(c)) for c in caps]
    if lengths:
        print(f'caption length in tokens (max_len {ds.max_len}; '
              f'{sum(n > ds.max_len for n in lengths)} captions cut):')
        print('\n'.join(histogram(lengths)))
    print(f'vocabulary size: {ds.tokenizer.vocab_size} ({type(ds.tokenizer).__name__}); '
          f'distinct words in these captions: '
          f'{len({w for c in caps for w in c.lower().split()})}')
    try:
        prep = load_preprocessed(ds.ann_file, ds.cache_dir, captions)
    except DataError as exc:
        prep = None
        print(f'concepts: unavailable ({exc})')
    if prep:
        nouns = Counter(w for v in present for ws in prep[v]['nouns'] for w in ws)
        verbs = Counter(w for v in present for ws in prep[v]['verbs'] for w in ws)
        print(f'objects ({len(nouns)} distinct): '
              + ', '.join(f'{w} {n}' for w, n in nouns.most_common(top)))
        print(f'actions ({len(verbs)} distinct): '
              + ', '.join(f'{w} {n}' for w, n in verbs.most_common(top)))
    print(f'missing captions: {len(no_caps)}' + (f' (e.g. {no_caps[:5]})' if no_caps else ''))
    for key, miss in no_feats.items():
        print(f'missing {key} features ({ds.feature_dirs[key]}): {len(miss)}'
              + (f' (e.g. {miss[:5]})' if miss else ''))
    print()


def main():
    args = parse_args()
    from mmengine.registry import init_default_scope

    import capdistill
    capdistill.setup_runtime()  # compatibility patches, for this process only
    from capdistill.engine.setup import read_config
    cfg = read_config(args.config, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'capdistill'))
    for name in [args.split] if args.split else list(SPLITS):
        loader = cfg.get(SPLITS[name])
        if loader:
            browse(name, loader['dataset'], args.top)
    return 0


if __name__ == '__main__':
    from capdistill.utils.cli import friendly_main
    sys.exit(friendly_main(main)())
