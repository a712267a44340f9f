"""Generate capdemo, the procedurally generated demo data set (videos, captions, features).

    python tools/make_demo_data.py                      # data/capdemo, 1200 videos
    python tools/make_demo_data.py --num-videos 40 --root /tmp/capdemo --force
    python tools/make_demo_data.py --captioned-fraction 0.2 0.5   # + split files per fraction
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def main(argv=None):
    from capdistill.utils.cli import int_at_least
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--root', default='data/capdemo',
                        help='where the videos, features, captions and splits are written')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of every random choice (scenes, captions, splits)')
    parser.add_argument('--num-videos', type=int, default=1200,
                        help='videos in all: 70%% train, 10%% valid, 20%% test (at least 10)')
    parser.add_argument('--workers', type=int_at_least(0), default=1, help='decoding processes')
    parser.add_argument('--force', action='store_true', help='rebuild even if complete')
    parser.add_argument('--captioned-fraction', type=float, nargs='+', default=[0.2],
                        metavar='F', help='write splits/capdemo_train-capP_list.json (a '
                        'fraction F of the train videos, by the seed) and the unlabeled '
                        'rest, capdemo_train-unl(100-P)_list.json (default: 0.2)')
    args = parser.parse_args(argv)
    if args.num_videos < 10:
        print('error: --num-videos must be at least 10', file=sys.stderr)
        return 1
    bad = [f for f in args.captioned_fraction if not 0 < f <= 1]
    if bad:
        print(f'error: --captioned-fraction {bad[0]} is not in (0, 1]', file=sys.stderr)
        return 1
    import capdistill
    capdistill.setup_runtime()  # compatibility patches, for this process only
    from capdistill.datasets.demo import make_demo_dataset
    result = make_demo_dataset(args.root, seed=args.seed, num_videos=args.num_videos,
                               force=args.force, workers=args.workers,
                               captioned_fractions=tuple(args.captioned_fraction))
    print(f'captions: {result["caption_file"]}')
    for fraction, (captioned, unlabeled) in result['captioned_splits'].items():
        print(f'{fraction:.0%} captioned: {captioned}; the rest unlabeled: {unlabeled}')
    for key, folder in result['feature_dirs'].items():
        print(f'features {key} ({result["feature_dims"][key]} dims): {folder}')
    return 0


if __name__ == '__main__':
    from capdistill.utils.cli import friendly_main
    sys.exit(friendly_main(main)())
