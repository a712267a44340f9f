"""Cost of a captioner config, side by side: parameters, FLOPs, latency per video.

For the deployed captioner of CONFIG (the student of a distillation config, the student
path of SFTCap) it reports, in one run:

* parameters: total (whole model, teacher paths included) and deployed;
* FLOPs per video (torch FlopCounterMode): one teacher-forced forward over a full-length
  caption, and one cached greedy decode;
* latency per video at each batch size (default 1 and 32): cached greedy, beam 5, and
  the reference's slow greedy loop (the whole head over a full-length caption buffer for
  every token) with the speedup ratio and a check that both greedy paths give identical
  tokens; the beam5/greedy ratio;
* for a distillation config, the same for the teacher, and teacher/student ratios.
* with ``--backends torch onnx onnx-int8``: the deployed model exported to ONNX
  (``tools/deploy.py``'s graphs, in a temporary folder) and timed on onnxruntime fp32 and
  dynamic int8 beside PyTorch eager, greedy and beam, with speedups over PyTorch and the
  share of captions identical to PyTorch's.

A distillation config (with or without its checkpoint) builds the student alone; the
teacher is built from its config at random weights, for its cost only, so neither the
teacher's checkpoint nor a trained teacher is needed (``--no-teacher`` skips it).

Random weights are fine for timing (no checkpoint needed); with random weights no
caption ends early, so every decode runs the full ``max_len + 1`` steps (worst case).

Example::

    OMP_NUM_THREADS=1 python tools/analysis/benchmark.py \\
        configs/sftcap/sftcap_shared_clip-b32_1xb64-20e_msrvtt.py --batch-sizes 1 32
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def parse_args(argv=None):
    from capdistill.utils.cli import add_cfg_options, int_at_least
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint', nargs='?', help='optional full checkpoint of the config')
    p.add_argument('--batch-sizes', type=int_at_least(1), nargs='+', default=[1, 32])
    p.add_argument('--num-frames', type=int_at_least(1), default=None,
                   help='frames per video (default: the model\'s positions, at most 15)')
    p.add_argument('--beam-size', type=int_at_least(1), default=5)
    p.add_argument('--repeats', type=int_at_least(1), default=3)
    p.add_argument('--slow-repeats', type=int_at_least(0), default=1)
    p.add_argument('--no-slow', action='store_true', help='skip the slow greedy path')
    p.add_argument('--no-teacher', action='store_true', help='skip the teacher of a KD config')
    p.add_argument('--threads', type=int_at_least(1), default=None, help='torch.set_num_threads')
    p.add_argument('--out', help='also write the results as json here')
    add_cfg_options(p)
    from capdistill.apis.onnx_runner import BACKENDS
    p.add_argument('--backends', nargs='+', metavar='BACKEND', choices=BACKENDS,
                   help='also time these back-ends side by side (onnx needs the deploy '
                        'extra): torch, onnx (fp32), onnx-int8 (weights multiplied as this '
                        'CPU suits), onnx-int8-int8w and onnx-int8-uint8w (as int8 or uint8 '
                        'whatever the CPU)')
    return p.parse_args(argv)


def build(cfg_path, checkpoint=None, options=None, with_teacher=True):
    """(deployed model, teacher or None, whole model) of a config, in eval mode.

    A distillation config builds its student only (no teacher checkpoint needed) and,
    with ``with_teacher``, its teacher architecture at random weights for comparison; an
    SCST config its captioner only.
    """
    from mmengine.registry import DefaultScope

    from capdistill.engine.setup import read_config
    from capdistill.registry import MODELS
    cfg = read_config(cfg_path, options)
    m = cfg.model
    # timing needs no trained weights: missing weight files are skipped with a note
    for part in (m, m.get('student') or {}, m.get('teacher') or {}):
        head = part.get('head') if hasattr(part, 'get') else None
        if head and head.get('clip_embedding') and not os.path.isfile(head.clip_embedding):
            print(f'note: {head.clip_embedding} absent; random word embedding')
            head.clip_embedding = None
    from capdistill.models.distillers import (deploys_a_wrapped_captioner, is_distillation,
                                              student_only_config)
    from capdistill.registry import TEACHERS
    teacher = None
    with DefaultScope.overwrite_default_scope('capdistill'):
        if deploys_a_wrapped_captioner(m):
            # the student (SCST: the captioner) alone, loaded strictly from the run's weights;
            # a distillation teacher only for its cost, at random weights (no checkpoint)
            model = MODELS.build(student_only_config(m, checkpoint))
            if with_teacher and is_distillation(m):  # several teachers: the primary one's cost
                teacher = TEACHERS.build(m.teacher if m.get('teacher') is not None
                                         else next(iter(m.teachers.values()))['model']).eval()
        else:
            model = MODELS.build(m)
            if checkpoint:
                from capdistill.utils import (load_full_checkpoint, load_matching_state,
                                              state_dict_of)
                load_matching_state(model, state_dict_of(load_full_checkpoint(checkpoint)),
                                    f'Checkpoint {checkpoint}')
    model.eval()
    return model, teacher, model


def measure(model, args, label, slow=True):
    from capdistill.evaluation.cost import dummy_batch, flops_per_video, latency_per_video
    frames = args.num_frames or min(15, model.visual_encoder.pos.shape[1])
    inputs, tokens = dummy_batch(model, 2, frames)
    res = dict(model=label, flops=flops_per_video(model, inputs, tokens), latency={})
    for bs in args.batch_sizes:
        inputs, _ = dummy_batch(model, bs, frames, seed=bs)
        row = {}
        row['greedy'] = latency_per_video(model, inputs, args.repeats, 1,
                                          strategy='greedy', use_cache=True)
        row[f'beam{args.beam_size}'] = latency_per_video(
            model, inputs, args.repeats, 1, strategy='beam', beam_size=args.beam_size)
        row['beam/greedy'] = row[f'beam{args.beam_size}'] / row['greedy']
        if slow:
            row['greedy_slow'] = latency_per_video(model, inputs, args.slow_repeats, 0,
                                                   strategy='greedy', use_cache=False)
            row['speedup'] = row['greedy_slow'] / row['greedy']
            fast = model.generate(inputs, strategy='greedy', use_cache=True)
            ref = model.generate(inputs, strategy='greedy', use_cache=False)
            row['identical'] = bool(torch.equal(fast, ref))
        res['latency'][bs] = row
    return res


def fmt(res, params, deployed):
    lines = [f"== {res['model']}: params total {params / 1e6:.2f}M, deployed "
             f"{deployed / 1e6:.2f}M; GFLOPs/video forward {res['flops']['forward'] / 1e9:.3f}, "
             f"greedy decode {res['flops']['greedy'] / 1e9:.3f}"]
    for bs, row in res['latency'].items():
        parts = [f'batch {bs:>3}:']
        for k, v in row.items():
            if isinstance(v, bool):
                parts.append(f'{k}={v}')
            elif k in ('speedup', 'beam/greedy'):
                parts.append(f'{k}={v:.2f}x')
            else:
                parts.append(f'{k}={v * 1e3:.2f}ms')
        lines.append('  ' + ' '.join(parts))
    return '\n'.join(lines)


def measure_backends(model, args):
    """PyTorch eager vs onnxruntime fp32/int8 latency per video, ratios in one run."""
    from capdistill.apis.onnx_runner import compare_backends, format_backends
    from capdistill.evaluation.cost import dummy_batch
    frames = args.num_frames or min(15, model.visual_encoder.pos.shape[1])
    batches = {bs: dummy_batch(model, bs, frames, seed=bs)[0] for bs in args.batch_sizes}
    res = compare_backends(model, batches, args.backends, beam_size=args.beam_size,
                           repeats=args.repeats)
    print('== back-ends (ms per video; speedup over torch):')
    if 'onnx-int8' in args.backends:  # the other int8 back-ends say their weights by name
        from capdistill.apis.onnx_runner import int8_weight_type
        print(f'   onnx-int8 multiplies {int8_weight_type()} weights on this CPU (int8 where '
              'it has VNNI)')
    print('\n'.join(format_backends(res)), flush=True)
    return res


def main(argv=None):
    args = parse_args(argv)
    import capdistill
    capdistill.setup_runtime()  # compatibility patches, for this process only
    if args.threads:
        torch.set_num_threads(args.threads)
    from capdistill.evaluation.cost import count_parameters, deployed_parameters
    deployed, teacher, whole = build(args.config, args.checkpoint, args.cfg_options,
                                     with_teacher=not args.no_teacher)
    results = {}
    total = count_parameters(whole) + (count_parameters(teacher) if teacher is not None else 0)
    results['student'] = measure(deployed, args, 'deployed', slow=not args.no_slow)
    results['student'].update(params_total=total, params_deployed=deployed_parameters(whole))
    print(fmt(results['student'], total, results['student']['params_deployed']))
    if args.backends:
        results['backends'] = measure_backends(deployed, args)
    if teacher is not None and not args.no_teacher:
        results['teacher'] = measure(teacher, args, 'teacher', slow=False)
        t_params = count_parameters(teacher)
        results['teacher'].update(params_total=t_params, params_deployed=t_params)
        print(fmt(results['teacher'], t_params, t_params))
        ratios = dict(params=t_params / results['student']['params_deployed'])
        for bs in args.batch_sizes:
            ratios[f'greedy_latency_b{bs}'] = (results['teacher']['latency'][bs]['greedy']
                                              / results['student']['latency'][bs]['greedy'])
        results['teacher/student'] = ratios
        print('== teacher/student: ' + ', '.join(f'{k} {v:.2f}x' for k, v in ratios.items()))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1, default=str)
    return results


if __name__ == '__main__':
    from capdistill.utils.cli import friendly_main
    friendly_main(main)()
