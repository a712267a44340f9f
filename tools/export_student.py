"""Export the deployed student of a training run as safetensors + json.

    python tools/export_student.py CONFIG CHECKPOINT --out DIR [--name NAME]

CONFIG CHECKPOINT in that order, as for tools/test.py and tools/caption_video.py.
Writes DIR/NAME.safetensors (student weights only: no teacher, no connectors, no
optimizer) and DIR/NAME.json (its model config with the vocabulary embedded, the frame
encoder, frame count and decoding settings), so the pair captions a video on its own::

    python tools/caption_video.py DIR/NAME.json clip.mp4

The frame encoder is the config's ``frame_encoder``, else the ``--encoder`` preset whose
folder the run's features were read from (``visual/clip_b32/frame_feature`` ->
``clip-b32``); ``--encoder``/``--encoder-cfg`` name it when neither says.
"""
import argparse
import sys

import capdistill
from capdistill.utils.cli import friendly_main

_CHECKPOINT_EXTS = ('.pth', '.pt', '.ckpt', '.safetensors', '.bin')


def parse_args(argv=None):
    from capdistill.apis.extraction import ENCODER_PRESETS
    parser = argparse.ArgumentParser(description='Export a student as safetensors + json')
    parser.add_argument('config', help="the run's config (.py; distillation or captioner)")
    parser.add_argument('checkpoint', help='full mmengine checkpoint of the run (.pth), or '
                        'work_dirs/RUN/best, work_dirs/RUN/latest or a glob')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--name', help='file name stem (default: the config name)')
    enc = parser.add_mutually_exclusive_group()
    enc.add_argument('--encoder', choices=sorted(ENCODER_PRESETS),
                     help='frame encoder preset recorded in the json (default: the '
                          "config's frame_encoder, else the one its features came from)")
    enc.add_argument('--encoder-cfg', help="frame encoder as a dict literal, e.g. "
                                           "\"dict(type='PixelGridEncoder', grid=8)\"")
    parser.add_argument('--encoder-checkpoint', help='weight file of the frame encoder')
    return parser.parse_args(argv)


def check_order(config, checkpoint):
    """One line when CONFIG and CHECKPOINT are swapped or CONFIG is no .py config."""
    usage = 'usage: tools/export_student.py CONFIG CHECKPOINT --out DIR'
    if config.endswith(_CHECKPOINT_EXTS) and checkpoint.endswith('.py'):
        return (f'arguments in the wrong order: expected CONFIG CHECKPOINT (the .py config '
                f'first, as tools/test.py takes them), got the checkpoint {config} first; run '
                f'tools/export_student.py {checkpoint} {config} --out DIR')
    if not config.endswith('.py'):
        return f'expected CONFIG (a .py config) first, got {config}; {usage}'
    if checkpoint.endswith('.py'):
        return f'expected CHECKPOINT (a .pth file) second, got the config {checkpoint}; {usage}'
    return None


def _encoder(args):
    from capdistill.apis.extraction import encoder_from_options
    return encoder_from_options(args.encoder, args.encoder_cfg, args.encoder_checkpoint)


@friendly_main
def main(argv=None):
    capdistill.setup_runtime()  # compatibility patches, for this process only
    args = parse_args(argv)
    try:
        problem = check_order(args.config, args.checkpoint)
        encoder = _encoder(args)
    except ValueError as exc:
        problem = str(exc)
    if problem:
        print(f'error: {problem}', file=sys.stderr)
        sys.exit(1)
    from capdistill.utils.cli import tool_inputs
    args.config, args.checkpoint = tool_inputs(args.config, args.checkpoint)
    from capdistill.apis.export import export_student
    st_path, js_path = export_student(args.config, args.checkpoint, args.out, args.name,
                                      frame_encoder=encoder)
    print(f'Wrote {st_path}\nWrote {js_path}')
    import json
    with open(js_path, encoding='utf-8') as f:
        meta = json.load(f)
    if meta.get('frame_encoder') is None:
        print('note: no frame encoder recorded (the config has no frame_encoder and its '
              'feature folder matches no preset): this export captions .npy features; for '
              'videos export again with --encoder/--encoder-cfg', file=sys.stderr)


if __name__ == '__main__':
    main()
