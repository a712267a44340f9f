"""Train a captioner or a distillation algorithm from a config."""
import argparse
import gc

import capdistill
from capdistill.utils.cli import add_common_args, check_checkpoint_file, friendly_main


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CHECKPOINT, or from the latest one in the work '
                             'dir when no path is given')
    parser.add_argument('--amp', action='store_true', help='mixed-precision training')
    add_common_args(parser, 'model.student.max_len=20')
    return parser.parse_args()


@friendly_main
def main():
    args = parse_args()  # before torch and mmengine are imported: --help is quick
    capdistill.setup_runtime()  # compatibility patches, for this process only
    from capdistill.engine.hooks import require_matching_checkpoint
    from capdistill.engine.setup import (build_runner, enable_amp, finish_distributed,
                                         load_config, setup_distributed)
    from capdistill.utils import trust_directory
    cfg = load_config(args)
    if args.amp:
        enable_amp(cfg)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    if cfg.get('load_from'):
        check_checkpoint_file(cfg.load_from)
    # mmengine loads both non-strictly: another config's checkpoint would half load
    if cfg.get('resume') or cfg.get('load_from'):
        require_matching_checkpoint(cfg, f'Checkpoint {cfg.load_from}' if cfg.get('load_from')
                                    else f'The latest checkpoint in {cfg.work_dir}')
    trust_directory(cfg.work_dir)
    setup_distributed(cfg, args.launcher)
    runner = build_runner(cfg)
    runner.train()
    del runner  # the DDP wrapper goes before its process group
    gc.collect()
    finish_distributed()


if __name__ == '__main__':
    main()
