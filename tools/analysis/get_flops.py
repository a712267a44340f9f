"""Parameters and FLOPs per video of a captioner config.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products,
attention and recurrent layers, CPU kernels included; 2 FLOPs per multiply-add) over (1) one teacher-forced forward of a
full-length caption and (2) one cached greedy decode; with random weights no caption
ends early, so (2) covers all ``max_len + 1`` steps. For a distillation config both the
deployed student and the teacher are reported.

Example::

    python tools/analysis/get_flops.py configs/sftcap/sftcap_shared_clip-b32_1xb64-20e_msvd.py
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def main(argv=None):
    from capdistill.utils.cli import add_cfg_options, int_at_least
    p = argparse.ArgumentParser(description='Parameters and FLOPs per video of a config.')
    p.add_argument('config')
    p.add_argument('--num-frames', type=int_at_least(1), default=None)
    add_cfg_options(p, 'model.head.depth=4')
    args = p.parse_args(argv)
    import capdistill
    capdistill.setup_runtime()  # compatibility patches, for this process only
    from tools.analysis.benchmark import build

    from capdistill.evaluation.cost import (count_parameters, deployed_parameters, dummy_batch,
                                            flops_per_video)
    deployed, teacher, whole = build(args.config, options=args.cfg_options)
    rows = [('deployed', deployed, deployed_parameters(whole))]
    if teacher is not None:
        rows.append(('teacher', teacher, count_parameters(teacher)))
    total = count_parameters(whole) + (count_parameters(teacher) if teacher is not None else 0)
    print(f'params total: {total / 1e6:.2f}M')
    out = {}
    for name, model, params in rows:
        frames = args.num_frames or min(15, model.visual_encoder.pos.shape[1])
        inputs, tokens = dummy_batch(model, 2, frames)
        flops = flops_per_video(model, inputs, tokens)
        out[name] = dict(params=params, **flops)
        print(f'{name}: params {params / 1e6:.2f}M, GFLOPs/video: teacher-forced forward '
              f'{flops["forward"] / 1e9:.3f}, greedy decode {flops["greedy"] / 1e9:.3f}')
    return out


if __name__ == '__main__':
    from capdistill.utils.cli import friendly_main
    friendly_main(main)()
