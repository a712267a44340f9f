"""Gradients of one distillation step, in one process or split over a DDP group.

``python ddp_grad_probe.py OUT [--per-rank-mean] [--cuda]``: alone it uses the whole batch; under
torchrun each rank takes its share. Captions have different lengths, and the first ranks
get the short ones. Rank 0 writes the student's gradients to OUT and each rank's token
count to OUT.tokens.json. ``--per-rank-mean`` swaps the losses' DDP-aware mean for a
plain per-rank mean, to show what the parity test guards against. ``--cuda`` runs on the
GPUs (one per rank, NCCL).
"""
import json
import os
import sys

import torch
import torch.distributed as dist

import capdistill
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import DefaultScope

from capdistill.registry import MODELS

WORDS = ['a', 'red', 'blue', 'ball', 'cube', 'spins', 'rolls']
LENGTHS = [1, 1, 2, 2, 5, 5, 4, 5]  # words per caption; 8 captions, 4 per rank on 2 ranks
PAD, BOS, EOS, FIRST_WORD = 0, 1, 2, 4


def captioner(in_dim, embed, key):
    return dict(type='Captioner', feature_key=key,
                visual_encoder=dict(type='FeatureProjector', in_dim=in_dim, embed_dim=embed,
                                    dropout=0.0),
                encoder=dict(type='IdentityEncoder'),
                head=dict(type='PrefixLMHead', embed_dim=embed, depth=1, num_heads=2, dropout=0.0),
                tokenizer=dict(type='WordTokenizer', words=WORDS), max_len=5)


def main(out, per_rank_mean=False, device='cpu'):
    capdistill.setup_runtime()
    if per_rank_mean:
        from capdistill.models.losses import caption_losses
        caption_losses.global_mean = lambda total, count: total / count.clamp(min=1e-8)
    distributed = 'WORLD_SIZE' in os.environ
    if distributed:
        if device == 'cuda':
            torch.cuda.set_device(int(os.environ['LOCAL_RANK']))
        dist.init_process_group('nccl' if device == 'cuda' else 'gloo')
    if device == 'cuda':
        device = f'cuda:{torch.cuda.current_device()}'
        torch.backends.cuda.matmul.allow_tf32 = False  # same arithmetic as the reference
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('capdistill'):
        # the teacher's weights do not matter for gradient parity
        model = MODELS.build(dict(type='DistillAlgorithm', student=captioner(6, 8, 'feats'),
                                  teacher=captioner(10, 16, 'teacher_feats'),
                                  allow_random_teacher=True,
                                  distill_losses=dict(loss_kd=dict(type='WordKLLoss', tau=2.0))))
    g = torch.Generator().manual_seed(1)
    n, t = len(LENGTHS), 4
    inputs = dict(feats=torch.randn(n, t, 6, generator=g), feats_mask=torch.ones(n, t, dtype=bool),
                  teacher_feats=torch.randn(n, t, 10, generator=g),
                  teacher_feats_mask=torch.ones(n, t, dtype=bool))
    tokens = torch.full((n, max(LENGTHS) + 2), PAD, dtype=torch.long)
    for i, length in enumerate(LENGTHS):
        words = torch.randint(FIRST_WORD, FIRST_WORD + len(WORDS), (length,), generator=g)
        tokens[i, :length + 2] = torch.cat([torch.tensor([BOS]), words, torch.tensor([EOS])])
    share = slice(rank * n // world, (rank + 1) * n // world)
    inputs = {k: v[share].to(device) for k, v in inputs.items()}
    samples = dict(tokens=tokens[share].to(device), video_id=[str(i) for i in range(n)][share])
    model.to(device).train()
    ids = [torch.device(device).index] if device != 'cpu' else None
    net = MMDistributedDataParallel(module=model, device_ids=ids) if distributed else model
    losses = net(inputs, samples, mode='loss')
    sum(losses.values()).backward()
    counts = torch.zeros(world, device=device)
    counts[rank] = (samples['tokens'][:, 1:] != PAD).sum()
    if distributed:
        dist.all_reduce(counts)
    if rank == 0:
        torch.save({k: p.grad.cpu() for k, p in model.named_parameters()}, out)
        with open(f'{out}.tokens.json', 'w') as f:
            json.dump(counts.tolist(), f)
    if distributed:
        dist.barrier()
        # Freeing the DDP reducer right after a collective can deadlock in gloo's
        # teardown (its worker thread waits for the GIL the freeing thread holds);
        # this probe has nothing left to clean up, so it leaves without teardown.
        sys.stdout.flush()
        os._exit(0)


if __name__ == '__main__':
    main(sys.argv[1], per_rank_mean='--per-rank-mean' in sys.argv[2:],
         device='cuda' if '--cuda' in sys.argv[2:] else 'cpu')
