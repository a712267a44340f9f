"""Caption quality of a captioner on PyTorch and on its ONNX exports, side by side.

Exports the deployed captioner of CONFIG + CHECKPOINT to a temporary folder (fp32 and,
for the int8 back-ends, dynamic int8), decodes a split of the config's data with each
back-end, greedy and beam, and prints one table: BLEU-4, METEOR, ROUGE-L, CIDEr and how
many captions are identical to PyTorch's. Batches are the config's test loader's, as in
``tools/test.py`` (dynamic int8 quantises activations per batch, so the batching counts).

Example::

    OMP_NUM_THREADS=1 python tools/analysis/backend_quality.py \\
        configs/capdemo/baseline_student_grid8_1xb64-8e_capdemo.py \\
        work_dirs/baseline_student_grid8_1xb64-8e_capdemo/best_CIDEr_epoch_8.pth \\
        --backends onnx onnx-int8-int8w onnx-int8-uint8w
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

METRICS = {'Bleu_4': 'BLEU-4', 'METEOR': 'METEOR', 'ROUGE_L': 'ROUGE-L', 'CIDEr': 'CIDEr'}


def parse_args(argv=None):
    from capdistill.apis.onnx_runner import BACKENDS
    from capdistill.utils.cli import add_cfg_options, int_at_least
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', help='the captioner\'s config (a distillation config: its student)')
    p.add_argument('checkpoint', help='a full checkpoint of the config')
    p.add_argument('--backends', nargs='+', metavar='BACKEND',
                   choices=[b for b in BACKENDS if b != 'torch'], default=['onnx', 'onnx-int8'],
                   help='ONNX back-ends to compare with PyTorch: onnx (fp32), onnx-int8 (weights '
                        'multiplied as this CPU suits), onnx-int8-int8w, onnx-int8-uint8w '
                        '(default: onnx onnx-int8)')
    p.add_argument('--split', choices=['test', 'val'], default='test',
                   help="the config's test or validation data (default: test)")
    p.add_argument('--beam-size', type=int_at_least(1), default=5)
    p.add_argument('--scorers', nargs='+', default=['Bleu', 'METEOR', 'ROUGE_L', 'CIDEr'],
                   help='pycocoevalcap scorers (METEOR needs Java)')
    p.add_argument('--threads', type=int_at_least(1), default=1,
                   help='torch and onnxruntime threads (default: 1)')
    p.add_argument('--out', help='also write the rows and every back-end\'s captions as json')
    add_cfg_options(p)
    return p.parse_args(argv)


def split_batches(cfg, split):
    """The split's batches as the test loop sees them (config loader, data preprocessor)."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from capdistill.registry import MODELS
    loader = cfg.test_dataloader if split == 'test' else cfg.val_dataloader
    with DefaultScope.overwrite_default_scope('capdistill'):
        prep = MODELS.build(dict(type='CaptionDataPreprocessor'))
        return [prep(batch) for batch in Runner.build_dataloader(loader, seed=0)]


def caption(runner, batches, tokenizer, **decode):
    """Video id -> caption of one back-end over the batches."""
    out = {}
    for batch in batches:
        ids = runner.generate(batch['inputs'], **decode)
        for vid, row in zip(batch['data_samples']['video_id'], ids):
            out[vid] = tokenizer.decode(row.tolist())
    return out


def main(argv=None):
    args = parse_args(argv)
    import capdistill
    capdistill.setup_runtime()  # compatibility patches, for this process only
    import torch

    from capdistill.apis.inference import init_captioner
    from capdistill.apis.onnx_runner import INT8_BACKENDS, backend_runners
    from capdistill.engine.setup import read_config
    from capdistill.evaluation.caption_scorer import score_captions
    torch.set_num_threads(args.threads)
    cfg = read_config(args.config, args.cfg_options)
    model = init_captioner(cfg, args.checkpoint)
    batches = split_batches(cfg, args.split)
    refs = {vid: list(r) for b in batches
            for vid, r in zip(b['data_samples']['video_id'], b['data_samples']['refs'])}
    int8 = {b: w for b, w in INT8_BACKENDS.items() if b in args.backends}
    decodes = dict(greedy=dict(strategy='greedy'),
                   **{f'beam {args.beam_size}': dict(strategy='beam', beam_size=args.beam_size)})
    rows, captions = [], {}
    with tempfile.TemporaryDirectory(prefix='capdistill_quality_') as tmp:
        frames = batches[0]['inputs'][model.feature_key].shape[1]
        runners = backend_runners(model, tmp, args.backends, frames, threads=args.threads)
        for label, decode in decodes.items():
            for name, runner in runners.items():
                t0 = time.perf_counter()
                caps = captions.setdefault(label, {})[name] = caption(
                    runner, batches, model.tokenizer, **decode)
                scores = score_captions(caps, refs, args.scorers)
                same = sum(caps[v] == captions[label]['torch'][v] for v in caps)
                rows.append(dict(decode=label, backend=name, identical=same, videos=len(caps),
                                 seconds=time.perf_counter() - t0,
                                 **{m: scores[m] for m in METRICS if m in scores}))
                print(f'{label} {name}: {same}/{len(caps)} captions identical to PyTorch, '
                      f'CIDEr {100 * scores.get("CIDEr", float("nan")):.2f} '
                      f'({rows[-1]["seconds"]:.1f} s)', flush=True)
    print(table(rows, int8))
    names = list(int8)
    for label, caps in captions.items():  # int8 back-ends that differ in weight type only
        for other in names[1:]:
            same = sum(caps[names[0]][v] == caps[other][v] for v in refs)
            print(f'{label}: {names[0]} and {other} agree on {same}/{len(refs)} captions')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(rows=rows, captions=captions), f, indent=1)
    return dict(rows=rows, captions=captions)


def table(rows, int8):
    """Markdown of the rows (scores in %), with the weight type of each int8 back-end."""
    from capdistill.apis.onnx_runner import int8_weight_type
    shown = [m for m in METRICS if m in rows[0]]
    lines = ['| decode | back-end | ' + ' | '.join(METRICS[m] for m in shown)
             + ' | captions identical to PyTorch |',
             '|---|---|' + '---|' * len(shown) + '---|']
    for r in rows:
        name = r['backend']
        if name in int8:
            name += f' ({int8_weight_type(int8[name])} weights)'
        cells = [f'{100 * r[m]:.2f}' for m in shown]
        same = '-' if r['backend'] == 'torch' else f'{r["identical"]}/{r["videos"]}'
        lines.append(f'| {r["decode"]} | {name} | ' + ' | '.join(cells) + f' | {same} |')
    return '\n'.join(lines)


if __name__ == '__main__':
    from capdistill.utils.cli import friendly_main
    friendly_main(main)()
