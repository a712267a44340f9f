"""Export a trained captioner to ONNX for onnxruntime, optionally with int8 weights.

Examples::

    python tools/deploy.py CONFIG work_dirs/run/best_CIDEr_epoch_8.pth --out deploy/ --int8
    python tools/deploy.py exported/student.json --out deploy/      # an exported student
    python tools/caption_video.py deploy/NAME.json deploy/NAME.onnx clip.mp4
    python tools/test.py CONFIG deploy/NAME.int8.onnx

Writes ``NAME.onnx`` (frame features -> visual tokens and the decoder's initial key/value
cache), ``NAME.step.onnx`` (one decoder step: last token + cache -> logits + cache, dynamic
batch and caption length) and ``NAME.json`` (tokenizer, frame encoder, frame count,
decoding settings, state layout); ``--int8`` adds ``NAME.int8.*`` with dynamically
quantised linear layers and output projection. Both graphs pass the ONNX checker and the
export is byte-for-byte reproducible.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import capdistill  # noqa: E402,F401  (compatibility patches first)
from capdistill.utils.cli import friendly_main, int_at_least  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the model config, or an exported student '
                                       '(.json/.safetensors from tools/export_student.py)')
    parser.add_argument('checkpoint', nargs='?',
                        help='a full checkpoint (.pth) or an exported student (.safetensors)')
    parser.add_argument('--out', required=True, help='folder for the ONNX files and json')
    parser.add_argument('--name', help='file stem (default: the config or export name)')
    parser.add_argument('--int8', action='store_true',
                        help='also write dynamically quantised int8 graphs (NAME.int8.*)')
    parser.add_argument('--num-frames', type=int_at_least(1),
                        help="frames per video (default: the config's test pipeline, else 15)")
    return parser.parse_args(argv)


@friendly_main
def main(argv=None):
    args = parse_args(argv)
    from capdistill.utils.cli import tool_inputs
    args.config, args.checkpoint = tool_inputs(args.config, args.checkpoint, config_folder=True)
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        _fail(f'{exc.name} is not installed; install the deploy extra: '
              "pip install -e '.[deploy]'")
    from capdistill.apis.export import is_export
    from capdistill.apis.onnx_export import OnnxExportError, export_onnx
    if args.checkpoint is None and not is_export(args.config):
        _fail(f'{args.config}: a config needs a checkpoint (or give an exported student '
              '.json/.safetensors alone)')
    try:
        paths = export_onnx(args.config, args.checkpoint, args.out, name=args.name,
                            int8=args.int8, num_frames=args.num_frames)
    except OnnxExportError as exc:
        _fail(str(exc))
    for js in paths:
        stem = js[:-len('.json')]
        sizes = ', '.join(f'{osp.basename(p)} {os.path.getsize(p) / 2**20:.2f} MiB'
                          for p in (stem + '.onnx', stem + '.step.onnx'))
        if js.endswith('.int8.json'):
            from capdistill.apis.onnx_runner import int8_weight_type
            sizes += (f'; weights stored as uint8, multiplied as int8 on CPUs with VNNI '
                      f'(here: {int8_weight_type()})')
        print(f'{js}: {sizes}', flush=True)


def _fail(message):
    print(f'error: {message}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
    main()
