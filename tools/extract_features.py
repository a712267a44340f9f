"""Extract per-frame features of videos into ``visual/<name>/frame_feature/<vid>.npy``.

Examples::

    python tools/extract_features.py data/msvd/raw_videos --encoder clip-b32 \
        --out data/msvd/visual/clip_b32/frame_feature
    python tools/extract_features.py videos.txt --encoder-cfg \
        "dict(type='TimmFrameEncoder', model_name='resnet50', checkpoint='model_zoo/resnet50.pth')" \
        --out data/mine/visual/resnet50/frame_feature --fps 1
    # 4 processes (one per GPU, or CPU processes), each on its own share of the videos
    bash tools/dist_run.sh extract_features.py 4 data/msrvtt/raw_videos --encoder clip-l14
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from capdistill.apis.extraction import ENCODER_PRESETS as PRESETS  # noqa: E402
from capdistill.apis.extraction import parse_encoder_cfg  # noqa: E402,F401
from capdistill.utils.cli import int_at_least, positive_number  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('videos', help='folder of videos, a text file with one path per '
                                       'line, or one video file')
    enc = parser.add_mutually_exclusive_group()
    enc.add_argument('--encoder', choices=sorted(PRESETS), default=None,
                     help='a preset encoder (default clip-b32)')
    enc.add_argument('--encoder-cfg', default=None,
                     help="encoder config as a Python dict literal, e.g. "
                          "\"dict(type='PixelGridEncoder', grid=8)\" or \"{'type': ...}\"")
    parser.add_argument('--checkpoint', default=None,
                        help='weight file, overriding the preset/config one')
    parser.add_argument('--out', default=None,
                        help='output folder; default <dataset>/visual/<name>/frame_feature '
                             'beside a <dataset>/raw_videos input')
    sampling = parser.add_mutually_exclusive_group()
    sampling.add_argument('--num-frames', type=int_at_least(1), default=None,
                          help='frames sampled uniformly per video (default 15)')
    sampling.add_argument('--fps', type=positive_number, default=None,
                          help='frames per second instead')
    parser.add_argument('--batch-size', type=int_at_least(1), default=64,
                        help='frames per encoder call')
    parser.add_argument('--workers', type=int_at_least(0), default=2, help='decoding processes')
    parser.add_argument('--fp16', action='store_true', help='store float16 features')
    parser.add_argument('--no-resume', action='store_true',
                        help='recompute features that already exist')
    parser.add_argument('--failures', default=None,
                        help='list of unreadable videos (default <out>/../failures.txt)')
    parser.add_argument('--device', default=None, help='cuda, cuda:1, cpu (default: auto)')
    parser.add_argument('--shard', default=None,
                        help='I/N: process the I-th of N interleaved shards (0-based); under '
                             'torchrun each process takes its own shard (RANK/WORLD_SIZE)')
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default=None,
                        help='pytorch: launched by torchrun (tools/dist_run.sh); found from '
                             'the WORLD_SIZE variable when not given')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def _torchrun_shard(args):
    """``(rank, world size)`` when torchrun started this process with more than one."""
    world = int(os.environ.get('WORLD_SIZE', '1') or 1)
    if args.launcher == 'none' or (world <= 1 and args.launcher is None):
        return None
    return (int(os.environ.get('RANK', '0')), world) if world > 1 else None


def _merge_shards(summary, out, failures, shard, dist):
    """Per-shard line; the failure lists joined into one file, totals for all shards.

    Under torchrun rank 0 waits for every shard and merges; with ``--shard I/N`` run by
    hand each shard merges the lists present when it ends (the last one sees them all).
    """
    from capdistill.apis.extraction import merge_shard_failures
    index, count = shard
    print(f'[shard {index}/{count}] extracted {summary["done"]}, skipped {summary["skipped"]}, '
          f'failed {summary["failed"]} of {summary["total"]} videos '
          f'({summary["wall_time"]:.1f} s)', file=sys.stderr, flush=True)
    failures = failures or osp.join(osp.dirname(osp.abspath(out)), 'failures.txt')
    keys = ('total', 'done', 'skipped', 'failed')
    if dist:
        import datetime

        import torch.distributed as tdist
        # Shards may finish hours apart on a real corpus: wait as long as that takes.
        tdist.init_process_group('gloo', timeout=datetime.timedelta(days=7))
        try:
            parts = [None] * count
            tdist.all_gather_object(parts, {k: summary[k] for k in keys})
        finally:
            tdist.destroy_process_group()
        if index != 0:
            return summary
        totals = {k: sum(p[k] for p in parts) for k in keys}
    else:
        totals = {k: summary[k] for k in keys}
    failed = merge_shard_failures(failures, count)
    if dist:
        print(f'all {count} shards: extracted {totals["done"]}, skipped {totals["skipped"]}, '
              f'failed {totals["failed"]} of {totals["total"]} videos -> {out}',
              file=sys.stderr)
    if failed:
        print(f'unreadable videos of {"all shards" if dist else "the shards so far"} listed '
              f'in {failures}', file=sys.stderr)
    return dict(summary, **totals) if dist else summary


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.encoder_cfg is not None:
            try:
                cfg = parse_encoder_cfg(args.encoder_cfg)
            except (SyntaxError, ValueError) as exc:
                raise ValueError(f'cannot read --encoder-cfg {args.encoder_cfg!r}: {exc}')
            name = str(cfg['type']).lower()
        else:
            preset, name = PRESETS[args.encoder or 'clip-b32']
            cfg = dict(preset)
        if args.checkpoint is not None:
            cfg['checkpoint'] = args.checkpoint
        out = args.out
        if out is None:
            folder = osp.abspath(args.videos.rstrip('/'))
            if osp.basename(folder) != 'raw_videos':
                raise ValueError('give --out (the input is not a <dataset>/raw_videos folder)')
            out = osp.join(osp.dirname(folder), 'visual', name, 'frame_feature')
        shard, dist = None, _torchrun_shard(args)
        if args.shard and dist:
            raise ValueError('--shard and torchrun both split the videos; use one of them')
        if args.shard:
            try:
                index, count = (int(v) for v in args.shard.split('/'))
            except ValueError:
                raise ValueError(f'--shard {args.shard}: expected I/N, e.g. 0/4') from None
            if not 0 <= index < count:
                raise ValueError(f'--shard {args.shard}: need 0 <= I < N')
            shard = (index, count)
        shard = dist or shard
        num_frames = args.num_frames
        if num_frames is None and args.fps is None:
            num_frames = 15
        if not osp.exists(args.videos):
            raise FileNotFoundError(f'input not found: {args.videos}')

        import capdistill
        capdistill.setup_runtime()  # compatibility patches, for this process only
        from capdistill.apis.extraction import extract_features, format_summary
        from capdistill.registry import BACKBONES
        device = args.device
        if dist and device is None:
            import torch
            if torch.cuda.is_available():  # one GPU per process, as torchrun numbers them
                device = f'cuda:{int(os.environ.get("LOCAL_RANK", 0))}'
        encoder = BACKBONES.build(cfg)
        summary = extract_features(
            args.videos, encoder, out, num_frames=num_frames, fps=args.fps,
            batch_size=args.batch_size, workers=args.workers, fp16=args.fp16,
            resume=not args.no_resume, failures_file=args.failures, device=device,
            progress=not args.no_progress and (shard is None or shard[0] == 0), shard=shard,
            verbose=False)
        if shard is not None:
            summary = _merge_shards(summary, out, args.failures, shard, bool(dist))
        else:
            print(format_summary(summary), file=sys.stderr)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f'error: {message}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('interrupted; finished files are kept, rerun to resume', file=sys.stderr)
        return 130
    return 0 if summary['done'] + summary['skipped'] > 0 or summary['total'] == 0 else 2


if __name__ == '__main__':
    sys.exit(main())
