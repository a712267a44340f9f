"""Gradients of one distillation step, in one process or split over a DDP group.

Run alone (``python ddp_grad_probe.py OUT``) it uses the whole batch; under torchrun each
rank takes its share. Rank 0 writes the student's gradients to OUT.
"""
import os
import sys

import torch
import torch.distributed as dist

import capdistill
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import DefaultScope

from capdistill.registry import MODELS

WORDS = ['a', 'red', 'blue', 'ball', 'cube', 'spins', 'rolls']


def captioner(in_dim, embed, key):
    return dict(type='Captioner', feature_key=key,
                visual_encoder=dict(type='FeatureProjector', in_dim=in_dim, embed_dim=embed,
                                    dropout=0.0),
                encoder=dict(type='IdentityEncoder'),
                head=dict(type='PrefixLMHead', embed_dim=embed, depth=1, num_heads=2, dropout=0.0),
                tokenizer=dict(type='WordTokenizer', words=WORDS), max_len=5)


def main(out):
    capdistill.setup_runtime()
    distributed = 'WORLD_SIZE' in os.environ
    if distributed:
        dist.init_process_group('gloo')
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('capdistill'):
        model = MODELS.build(dict(type='DistillAlgorithm', student=captioner(6, 8, 'feats'),
                                  teacher=captioner(10, 16, 'teacher_feats'),
                                  distill_losses=dict(kd=dict(type='WordKLLoss', tau=2.0))))
    g = torch.Generator().manual_seed(1)
    n, t = 8, 4
    inputs = dict(feats=torch.randn(n, t, 6, generator=g), feats_mask=torch.ones(n, t, dtype=bool),
                  teacher_feats=torch.randn(n, t, 10, generator=g),
                  teacher_feats_mask=torch.ones(n, t, dtype=bool))
    # equal caption lengths: every rank averages over the same number of tokens
    words = torch.randint(4, 4 + len(WORDS), (n, 3), generator=g)
    tokens = torch.cat([torch.ones(n, 1, dtype=torch.long), words,
                        torch.full((n, 1), 2, dtype=torch.long)], dim=1)
    share = slice(rank * n // world, (rank + 1) * n // world)
    inputs = {k: v[share] for k, v in inputs.items()}
    samples = dict(tokens=tokens[share], video_id=[str(i) for i in range(n)][share])
    model.train()
    net = MMDistributedDataParallel(module=model, device_ids=None) if distributed else model
    losses = net(inputs, samples, mode='loss')
    sum(losses.values()).backward()
    if rank == 0:
        torch.save({k: p.grad.clone() for k, p in model.named_parameters()}, out)
    if distributed:
        dist.barrier()
        # Freeing the DDP reducer right after a collective can deadlock in gloo's
        # teardown (its worker thread waits for the GIL the freeing thread holds);
        # this probe has nothing left to clean up, so it leaves without teardown.
        sys.stdout.flush()
        os._exit(0)


if __name__ == '__main__':
    main(sys.argv[1])
