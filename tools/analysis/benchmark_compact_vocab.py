"""Full vs compact student vocabulary: parameters and greedy latency, side by side.

Builds the student of a distillation config twice or more: with its own (full) tokenizer
and with a ``CompactTokenizer`` over the same base, whose token list comes from caption
files (``--captions``, every caption of each annotation file) and/or is padded to given
sizes (``--sizes``: the caption tokens plus the lowest other base ids, a stand-in for a
corpus that is not on this machine). Random weights (timing only): no caption ends early,
so every decode runs all ``max_len + 1`` steps on both sides. One line per vocabulary:
parameters, greedy ms per video at each batch size, and ratios to the full vocabulary.

``--save-vocab DIR`` writes each compact list as a vocabulary file
(``DIR/compact_<size>.json``, the format ``CompactTokenizer(vocab_file=...)`` reads), so
the other benchmarks can build the same compact student, e.g.::

    python tools/analysis/benchmark_compact_vocab.py CONFIG --captions CAPTIONS \\
        --sizes 10000 --save-vocab work_dirs/decbench --save-only
    python tools/analysis/benchmark.py CONFIG --backends torch onnx onnx-int8 \\
        --cfg-options model.student.tokenizer.vocab_file=work_dirs/decbench/compact_10000.json \\
        model.student.tokenizer.build_from=None

Example (the figures in configs/sftcap/README.md)::

    OMP_NUM_THREADS=1 python tools/analysis/benchmark_compact_vocab.py \\
        configs/sftcap/sftcap_l14-to-b32_clip-compact_1xb64-20e_msrvtt.py \\
        --captions data/capdemo/language/capdemo_caption.json --sizes 4000 10000
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def parse_args(argv=None):
    from capdistill.utils.cli import int_at_least
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', help='a distillation (or captioner) config')
    p.add_argument('--captions', nargs='*', default=[], help='annotation files to build from')
    p.add_argument('--sizes', type=int_at_least(1), nargs='*', default=[],
                   help='compact sizes to time')
    p.add_argument('--batch-sizes', type=int_at_least(1), nargs='+', default=[1, 32])
    p.add_argument('--num-frames', type=int_at_least(1), default=15)
    p.add_argument('--repeats', type=int_at_least(1), default=3)
    p.add_argument('--threads', type=int_at_least(1), default=1)
    p.add_argument('--save-vocab', metavar='DIR',
                   help='write each compact list to DIR/compact_<size>.json')
    p.add_argument('--save-only', action='store_true', help='write the lists, time nothing')
    return p.parse_args(argv)


def save_vocab(path, base, ids):
    """A vocabulary file for ``CompactTokenizer(vocab_file=path)`` (no ``build_from``)."""
    import json
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(dict(base=type(base).__name__, base_fingerprint=base.fingerprint(),
                       ids=[int(i) for i in ids]), f)
    print(f'wrote {path} ({len(ids)} tokens)')


def _student_cfg(path):
    from capdistill.engine.setup import read_config
    m = read_config(path).model
    student = m.get('student') or m
    student = student.to_dict() if hasattr(student, 'to_dict') else dict(student)
    student['head'].pop('clip_embedding', None)  # timing needs no trained weights
    return student


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import capdistill
    capdistill.setup_runtime()
    from mmengine.registry import DefaultScope

    from capdistill.datasets.annotations import load_captions
    from capdistill.datasets.tokenizers import CompactTokenizer
    from capdistill.evaluation.cost import count_parameters, dummy_batch, latency_per_video
    from capdistill.registry import STUDENTS, TOKENIZERS
    student = _student_cfg(args.config)
    tok_cfg = student['tokenizer']
    base_cfg = tok_cfg.get('base', tok_cfg) if tok_cfg['type'] == 'CompactTokenizer' \
        else tok_cfg
    base = TOKENIZERS.build(dict(base_cfg))
    captions = [c for f in args.captions for caps in load_captions(f).values() for c in caps]
    kept = CompactTokenizer.select(base, captions)
    variants = [('full', dict(base_cfg))]
    if args.captions:
        variants.append((f'compact ({len(captions)} captions)',
                         dict(type='CompactTokenizer', base=dict(base_cfg), ids=kept)))
    for size in args.sizes:
        have = set(kept)
        extra = [i for i in range(base.vocab_size) if i not in have][:max(0, size - len(kept))]
        variants.append((f'compact (padded to {size})',
                         dict(type='CompactTokenizer', base=dict(base_cfg), ids=kept + extra)))
    if args.save_vocab:
        for label, tok in variants[1:]:
            save_vocab(os.path.join(args.save_vocab, f"compact_{len(tok['ids'])}.json"),
                       base, tok['ids'])
    if args.save_only:
        return []
    rows = []
    for label, tok in variants:
        with DefaultScope.overwrite_default_scope('capdistill'):
            model = STUDENTS.build(dict(student, tokenizer=tok)).eval()
        row = dict(label=label, vocab=model.tokenizer.vocab_size,
                   params=count_parameters(model), ms={})
        for bs in args.batch_sizes:
            inputs, _ = dummy_batch(model, bs, args.num_frames, seed=bs)
            row['ms'][bs] = 1e3 * latency_per_video(model, inputs, args.repeats, 1,
                                                    strategy='greedy', use_cache=True)
        rows.append(row)
        del model
    full = rows[0]
    print(f'threads {torch.get_num_threads()}, {args.num_frames} frames, greedy (cached), '
          f'ms per video, median of {args.repeats}')
    for row in rows:
        lat = '  '.join(f"b{bs} {row['ms'][bs]:8.2f} ms ({full['ms'][bs] / row['ms'][bs]:.2f}x)"
                        for bs in args.batch_sizes)
        print(f"{row['label']:<28} vocab {row['vocab']:>6}  params {row['params'] / 1e6:6.2f}M "
              f"({row['params'] / full['params']:.3f} of full)  {lat}")
    return rows


if __name__ == '__main__':
    from capdistill.utils.cli import friendly_main
    friendly_main(main)()
