"""Generate capdemo, the procedurally generated demo data set (videos, captions, features).

    python tools/make_demo_data.py                      # data/capdemo, 1200 videos
    python tools/make_demo_data.py --num-videos 40 --root /tmp/capdemo --force
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--root', default='data/capdemo')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-videos', type=int, default=1200)
    parser.add_argument('--workers', type=int, default=1, help='decoding processes')
    parser.add_argument('--force', action='store_true', help='rebuild even if complete')
    args = parser.parse_args(argv)
    if args.num_videos < 10:
        print('error: --num-videos must be at least 10', file=sys.stderr)
        return 1
    import capdistill
    capdistill.setup_runtime()  # compatibility patches, for this process only
    from capdistill.datasets.demo import make_demo_dataset
    result = make_demo_dataset(args.root, seed=args.seed, num_videos=args.num_videos,
                               force=args.force, workers=args.workers)
    print(f'captions: {result["caption_file"]}')
    for key, folder in result['feature_dirs'].items():
        print(f'features {key} ({result["feature_dims"][key]} dims): {folder}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
