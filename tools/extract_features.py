"""Extract per-frame features of videos into ``visual/<name>/frame_feature/<vid>.npy``.

Examples::

    python tools/extract_features.py data/msvd/raw_videos --encoder clip-b32 \
        --out data/msvd/visual/clip_b32/frame_feature
    python tools/extract_features.py videos.txt --encoder-cfg \
        "dict(type='TimmFrameEncoder', model_name='resnet50', checkpoint='model_zoo/resnet50.pth')" \
        --out data/mine/visual/resnet50/frame_feature --fps 1
"""
import argparse
import ast
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

# name -> (encoder config, folder name under visual/)
PRESETS = {
    'pixel-grid8': (dict(type='PixelGridEncoder', grid=8), 'grid8'),
    'pixel-grid16': (dict(type='PixelGridEncoder', grid=16), 'grid16'),
    'clip-b32': (dict(type='OpenCLIPVisual', model_name='ViT-B-32',
                      checkpoint='model_zoo/clip_model/ViT-B-32.pt'), 'clip_b32'),
    'clip-b16': (dict(type='OpenCLIPVisual', model_name='ViT-B-16',
                      checkpoint='model_zoo/clip_model/ViT-B-16.pt'), 'clip_b16'),
    'clip-l14': (dict(type='OpenCLIPVisual', model_name='ViT-L-14',
                      checkpoint='model_zoo/clip_model/ViT-L-14.pt'), 'clip_l14'),
}


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
    sampling.add_argument('--num-frames', type=int, default=None,
                          help='frames sampled uniformly per video (default 15)')
    sampling.add_argument('--fps', type=float, default=None, help='frames per second instead')
    parser.add_argument('--batch-size', type=int, default=64, help='frames per encoder call')
    parser.add_argument('--workers', type=int, default=2, help='decoding processes')
    parser.add_argument('--fp16', action='store_true', help='store float16 features')
    parser.add_argument('--no-resume', action='store_true',
                        help='recompute features that already exist')
    parser.add_argument('--failures', default=None,
                        help='list of unreadable videos (default <out>/../failures.txt)')
    parser.add_argument('--device', default=None, help='cuda, cuda:1, cpu (default: auto)')
    parser.add_argument('--shard', default=None,
                        help='I/N: process the I-th of N interleaved shards (0-based)')
    parser.add_argument('--no-progress', action='store_true')
    return parser.parse_args(argv)


def parse_encoder_cfg(text):
    """A dict literal, either ``{...}`` or ``dict(...)``, without evaluating code."""
    tree = ast.parse(text.strip(), mode='eval').body
    if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == 'dict':
        if tree.args:
            raise ValueError('use keyword arguments only in dict(...)')
        return {kw.arg: ast.literal_eval(kw.value) for kw in tree.keywords}
    value = ast.literal_eval(tree)
    if not isinstance(value, dict) or 'type' not in value:
        raise ValueError('the encoder config must be a dict with a "type" key')
    return value


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
        shard = None
        if args.shard:
            index, count = (int(v) for v in args.shard.split('/'))
            if not 0 <= index < count:
                raise ValueError(f'--shard {args.shard}: need 0 <= I < N')
            shard = (index, count)
        num_frames = args.num_frames
        if num_frames is None and args.fps is None:
            num_frames = 15
        if not osp.exists(args.videos):
            raise FileNotFoundError(f'input not found: {args.videos}')

        import capdistill
        capdistill.setup_runtime()  # compatibility patches, for this process only
        from capdistill.apis.extraction import extract_features
        from capdistill.registry import BACKBONES
        encoder = BACKBONES.build(cfg)
        summary = extract_features(
            args.videos, encoder, out, num_frames=num_frames, fps=args.fps,
            batch_size=args.batch_size, workers=args.workers, fp16=args.fp16,
            resume=not args.no_resume, failures_file=args.failures, device=args.device,
            progress=not args.no_progress, shard=shard)
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
