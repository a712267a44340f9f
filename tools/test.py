"""Evaluate a checkpoint on the test split of a config."""
import argparse
import gc
import os.path as osp

import capdistill
from capdistill.utils.cli import (add_common_args, check_checkpoint_file, friendly_main,
                                  tool_inputs)


def parse_args():
    parser = argparse.ArgumentParser(description='Test a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file, or work_dirs/RUN/best, '
                        'work_dirs/RUN/latest or a glob')
    parser.add_argument('--work-dir', help='where logs and results go')
    parser.add_argument('--out', help='write predictions, per-video scores and the aggregate '
                                      'to this json (default <work-dir>/predictions.json)')
    parser.add_argument('--show-dir', help='write an HTML report (report.html) to this folder')
    parser.add_argument('--video-dir', help='video files for the report\'s frame strips '
                                            '(default <data_root>/raw_videos)')
    parser.add_argument('--teacher-preds', help='predictions json of a teacher run, shown '
                                                'beside the captions in the report')
    add_common_args(parser, 'test_dataloader.batch_size=8')
    return parser.parse_args()


@friendly_main
def main():
    args = parse_args()  # before torch and mmengine are imported: --help is quick
    capdistill.setup_runtime()  # compatibility patches, for this process only
    from mmengine.dist import is_main_process

    from capdistill.engine.hooks import require_matching_checkpoint
    from capdistill.engine.setup import (build_runner, finish_distributed, load_config,
                                         setup_distributed)
    from capdistill.models.distillers import deploys_a_wrapped_captioner, student_only_config
    from capdistill.utils import trust_directory
    args.config, args.checkpoint = tool_inputs(args.config, args.checkpoint)
    if not args.checkpoint.endswith('.onnx'):  # an ONNX graph is no torch file
        check_checkpoint_file(args.checkpoint)
    cfg = load_config(args)
    from capdistill.apis.onnx_runner import is_onnx_export
    if is_onnx_export(args.checkpoint):
        # an ONNX export (tools/deploy.py): captions come from onnxruntime
        cfg.model = dict(type='OnnxStudent', path=args.checkpoint,
                         decode=export_decode(args.cfg_options, args.checkpoint, cfg.model))
        cfg.load_from = None
    elif args.checkpoint.endswith('.safetensors'):
        # an exported student: built from its own json, loaded without unpickling
        cfg.model = dict(type='ExportedStudent', path=args.checkpoint,
                         decode=export_decode(args.cfg_options, args.checkpoint, cfg.model))
        cfg.load_from = None
    elif deploys_a_wrapped_captioner(cfg.model):
        # the student (or SCST's captioner) alone, its weights loaded strictly when it is
        # built: testing needs neither the teacher nor the run's starting checkpoint
        cfg.model = student_only_config(cfg.model, args.checkpoint)
        cfg.load_from = None
    else:
        cfg.load_from = args.checkpoint
        # the Runner loads it non-strictly; a checkpoint of another config must stop here
        require_matching_checkpoint(cfg, f'Checkpoint {args.checkpoint}')
    if args.teacher_preds and not osp.isfile(args.teacher_preds):
        raise FileNotFoundError(f'Teacher predictions file not found: {args.teacher_preds}')
    out = args.out or osp.join(cfg.work_dir, 'predictions.json')
    evaluator = cfg.test_evaluator
    evaluators = evaluator if isinstance(evaluator, list) else [evaluator]
    evaluators[0]['out_file'] = out
    check_scorers(evaluators)
    trust_directory(cfg.work_dir)
    setup_distributed(cfg, args.launcher)
    runner = build_runner(cfg)
    metrics = runner.test()
    if is_main_process():
        print_table(metrics)
        if args.show_dir:
            write_html(runner, cfg, out, args)
    del runner  # the DDP wrapper goes before its process group
    gc.collect()
    finish_distributed()


def export_decode(options, export, model_cfg):
    """The decoding settings that ``--cfg-options model.decode...`` (of a training wrapper:
    ``model.student.decode...``) give an export; the export's files fix the rest of its
    model, so any other model option stops here."""
    from capdistill.engine.config_check import ConfigError
    from capdistill.models.distillers import deployed_captioner_path
    prefix = deployed_captioner_path(model_cfg) + '.decode'
    decode = {}
    for key, value in (options or {}).items():
        if key == prefix:
            decode.update(value)
        elif key.startswith(prefix + '.'):
            decode[key[len(prefix) + 1:]] = value
        elif key == 'model' or key.startswith('model.'):
            raise ConfigError(f'--cfg-options {key}: {export} is an export, whose files fix '
                              f'the model; only {prefix}.* options apply to it')
    from capdistill.models.captioners.decoding import check_decode_settings
    check_decode_settings(decode, path=prefix)  # named as given; the export checks its ids
    return decode


def check_scorers(evaluators):
    """Missing Java or SPICE models are reported before the test run, in one line."""
    from capdistill.evaluation.caption_scorer import (DEFAULT_METRICS, SpiceModelsMissingError,
                                                      check_available)
    for ev in evaluators:
        if 'scorers' in ev or str(ev.get('type', '')).endswith('CaptionMetric'):
            try:
                check_available(ev.get('scorers', DEFAULT_METRICS))
            except SpiceModelsMissingError as exc:
                raise FileNotFoundError(str(exc)) from None


def print_table(metrics):
    """The aggregate scores as a two-row table on stdout."""
    if not metrics:
        return
    names = list(metrics)
    values = [f'{metrics[k]:.4f}' if isinstance(metrics[k], float) else str(metrics[k])
              for k in names]
    widths = [max(len(n), len(v)) for n, v in zip(names, values)]
    print('| ' + ' | '.join(n.ljust(w) for n, w in zip(names, widths)) + ' |')
    print('|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    print('| ' + ' | '.join(v.ljust(w) for v, w in zip(values, widths)) + ' |', flush=True)


def _references(dataset):
    refs = {}
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        vid = str(info.get('video_id'))
        if 'refs' in info:
            refs.setdefault(vid, list(info['refs']))
        elif 'caption' in info:
            refs.setdefault(vid, []).append(info['caption'])
    return refs


def write_html(runner, cfg, out, args):
    """The HTML report of this test run in ``args.show_dir``."""
    import json
    from capdistill.evaluation.report import write_report_from_json
    dataset = runner.test_dataloader.dataset
    video_dir = args.video_dir
    if video_dir is None:
        root = getattr(dataset, 'data_root', None) or cfg.get('data_root')
        video_dir = osp.join(root, 'raw_videos') if root else None
    teacher = None
    if args.teacher_preds:
        with open(args.teacher_preds, encoding='utf-8') as f:
            data = json.load(f)
        teacher = data.get('predictions', data) if isinstance(data, dict) else None
        if not isinstance(teacher, dict):
            raise FileNotFoundError(f'{args.teacher_preds}: no {{video id: caption}} mapping; '
                                    'give a tools/test.py predictions json')
    html_file = osp.join(args.show_dir, 'report.html')
    kwargs = dict(video_dir=video_dir,
                  title=f'{osp.basename(args.config)} / {osp.basename(args.checkpoint)}')
    if teacher is not None:
        kwargs['teacher_captions'] = teacher
    write_report_from_json(out, _references(dataset), html_file, **kwargs)
    print(f'HTML report written to {html_file}', flush=True)


if __name__ == '__main__':
    main()
