"""Caption video files (or .npy frame features) with a trained captioner.

Examples::

    python tools/caption_video.py CONFIG work_dirs/run/best_CIDEr.pth my_clip.mp4 other.webm
    python tools/caption_video.py CONFIG student.safetensors clip.mp4 --encoder pixel-grid8
    python tools/caption_video.py CONFIG ckpt.pth feats.npy          # precomputed features
    python tools/caption_video.py exported/x.json clip.mp4           # an exported student
    python tools/caption_video.py exported/x.json exported/x.safetensors clip.mp4
    python tools/caption_video.py deploy/x.json deploy/x.onnx clip.mp4   # ONNX (tools/deploy.py)

Frame features must come from the encoder the model was trained on: an exported
student's json names it (and the frame count), else the config's
``frame_encoder = dict(type=...)`` entry, else ``--encoder``/``--encoder-cfg``
(``pixel-grid8`` for the demo student, ``pixel-grid16`` for the demo teacher). CLIP
presets read their weights from ``model_zoo/clip_model/`` (see model_zoo/README.md).
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import capdistill  # noqa: E402
from capdistill.utils.cli import friendly_main, int_at_least  # noqa: E402


def parse_args(argv=None):
    from capdistill.apis.extraction import ENCODER_PRESETS
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the model config (training or deployment), or an '
                                       'exported student (.json, .safetensors or its folder)')
    parser.add_argument('inputs', nargs='+', metavar='[CHECKPOINT] VIDEO',
                        help='a full checkpoint (.pth) or an exported student (.safetensors), '
                             'omitted after an exported student, then video files or .npy '
                             'frame features')
    enc = parser.add_mutually_exclusive_group()
    enc.add_argument('--encoder', choices=sorted(ENCODER_PRESETS),
                     help="frame encoder preset (default: the config's frame_encoder)")
    enc.add_argument('--encoder-cfg', help="frame encoder as a dict literal, e.g. "
                                           "\"dict(type='PixelGridEncoder', grid=8)\"")
    parser.add_argument('--encoder-checkpoint', help='weight file of the frame encoder')
    parser.add_argument('--num-frames', type=int_at_least(1),
                        help="frames per video (default: the export's or config's, else 15)")
    parser.add_argument('--beam-size', type=int_at_least(1), help='beam search with this beam size')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N (default: cpu)')
    parser.add_argument('--threads', type=int_at_least(1),
                        help='torch CPU threads (default: half the available cores, or '
                             'OMP_NUM_THREADS when set)')
    parser.add_argument('--out', help='also write the captions and timings to this json')
    args = parser.parse_args(argv)
    args.checkpoint, args.videos = _split_inputs(parser, args.config, args.inputs)
    return args


def _split_inputs(parser, config, inputs):
    """``(checkpoint, videos)``: an exported student needs no CHECKPOINT argument."""
    from capdistill.apis.export import is_export
    first = inputs[0]
    if is_export(config) and not (is_export(first)
                                  or first.endswith(('.pth', '.pt', '.ckpt', '.onnx'))):
        return None, list(inputs)
    if len(inputs) < 2:
        parser.error(f'give the videos to caption after CHECKPOINT {first} '
                     '(CONFIG CHECKPOINT VIDEO [VIDEO ...])')
    return first, list(inputs[1:])


@friendly_main
def main(argv=None):
    capdistill.setup_runtime()  # compatibility patches, for this process only
    args = parse_args(argv)
    import torch

    from capdistill.engine.setup import default_cpu_threads
    torch.set_num_threads(args.threads or default_cpu_threads())
    from capdistill.apis.captioning import (CaptionInputError, caption_video,
                                            init_video_captioner)
    from capdistill.apis.extraction import encoder_from_options
    from capdistill.datasets.video_io import VideoReadError
    from mmengine.utils import mkdir_or_exist

    from capdistill.utils.cli import tool_inputs
    args.config, args.checkpoint = tool_inputs(args.config, args.checkpoint, config_folder=True)
    try:
        encoder = encoder_from_options(args.encoder, args.encoder_cfg,
                                           args.encoder_checkpoint)
    except ValueError as exc:
        _fail(str(exc))
    from capdistill.apis.onnx_runner import init_onnx_captioner, is_onnx_export
    onnx_export = args.checkpoint if args.checkpoint is not None else args.config
    if is_onnx_export(onnx_export):  # tools/deploy.py output, run on onnxruntime
        model = init_onnx_captioner(onnx_export, encoder=encoder)
    else:
        model = init_video_captioner(args.config, args.checkpoint, device=args.device,
                                     encoder=encoder)
    decode = {} if args.beam_size is None else dict(strategy='beam', beam_size=args.beam_size)
    if args.out:  # its folder exists before the videos are captioned, not after
        mkdir_or_exist(osp.dirname(osp.abspath(args.out)))
    results, failures = [], []
    for video in args.videos:
        try:
            res = caption_video(model, video, num_frames=args.num_frames, **decode)
        except VideoReadError as exc:
            hint = ('' if 'give a video' in exc.reason else
                    '; check the file (an mp4/avi/webm/mkv that ffmpeg can decode)')
            failures.append(f'cannot read video {exc.path}: {exc.reason}{hint}')
            continue
        except CaptionInputError as exc:
            _fail(str(exc))
        results.append(res)
        print(f'{video}\t{res["caption"]}\t({res["time"]:.3f} s: read {res["read_time"]:.3f}, '
              f'encode {res["encode_time"]:.3f}, caption {res["caption_time"]:.3f})',
              flush=True)
    if results:
        total = sum(r['time'] for r in results)
        print(f'{len(results)} video(s) captioned in {total:.2f} s '
              f'({total / len(results):.3f} s per video)')
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as f:
            json.dump(results, f, indent=2, ensure_ascii=False)
    if failures:
        for line in failures[:-1]:
            print(f'error: {line}', file=sys.stderr)
        _fail(failures[-1])


def _fail(message):
    print(f'error: {message}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
    main()
