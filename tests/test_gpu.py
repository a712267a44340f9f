"""What should also run on a GPU: DDP over NCCL, fp16 AMP training, decoding on the device.

Every test here carries the ``gpu`` marker and is skipped where CUDA is absent (see
conftest.py). ``tools/analysis/gpu_check.py`` runs them together with a 1-epoch SFTCap (b)
throughput run; ``pytest -m gpu`` runs them alone.
"""
import os
import sys

import pytest
import torch

from conftest import REPO, free_port, run_tool, write_tiny_config

pytestmark = pytest.mark.gpu

KD_MODEL = ("dict(type='DistillAlgorithm', student=_student, teacher=_teacher, "
            "allow_random_teacher=True, "  # throughput and plumbing, not the teacher's quality
            "distill_losses=dict(loss_word=dict(type='WordKLLoss', tau=2.0)))")
PROBE = os.path.join(REPO, 'tests', 'ddp_grad_probe.py')


def test_dist_train_over_nccl(tiny_root, tmp_path):
    nproc = min(2, torch.cuda.device_count())  # NCCL needs one GPU per rank
    cfg = write_tiny_config(tmp_path / 'kd.py', tiny_root, model=KD_MODEL)
    res = run_tool(['bash', 'tools/dist_train.sh', cfg, str(nproc), '--work-dir', str(tmp_path),
                    '--cfg-options', 'train_cfg.max_epochs=1'],
                   env=dict(PYTHON=sys.executable, PORT=str(free_port())))
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert 'Distributed training: True' in log and 'distill.loss_word' in log
    assert "backend='nccl'" in open(tmp_path / 'kd.py').read()  # the config the run used
    assert (tmp_path / 'epoch_1.pth').is_file()


def test_ddp_gradient_parity_over_nccl(tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip('needs 2 GPUs (NCCL: one GPU per rank)')
    single, dist = tmp_path / 'single.pt', tmp_path / 'dist.pt'
    res = run_tool([PROBE, str(single), '--cuda'])
    assert res.returncode == 0, res.stderr[-2000:]
    res = run_tool([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
                    f'--master_port={free_port()}', PROBE, str(dist), '--cuda'])
    assert res.returncode == 0, res.stderr[-2000:]
    a, b = torch.load(single, weights_only=True), torch.load(dist, weights_only=True)
    assert a.keys() == b.keys() and len(a) > 10
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5


def test_fp16_amp_training(tiny_root, tmp_path):
    cfg = write_tiny_config(tmp_path / 'teacher.py', tiny_root)
    res = run_tool(['tools/train.py', cfg, '--amp', '--work-dir', str(tmp_path),
                    '--cfg-options', 'train_cfg.max_epochs=1'])
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert "type='AmpOptimWrapper'" in open(tmp_path / 'teacher.py').read()
    ckpt = torch.load(tmp_path / 'epoch_1.pth', map_location='cpu', weights_only=False)
    assert 'loss_scaler' in ckpt['optimizer']  # fp16 dynamic loss scaling was on
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values()
               if v.is_floating_point())
    assert 'CIDEr' in log  # validation ran on the device


def test_decoding_on_device_matches_cpu(tiny_root, tmp_path):
    from capdistill.apis import init_captioner
    cfg = write_tiny_config(tmp_path / 'teacher.py', tiny_root)
    torch.manual_seed(0)
    cpu = init_captioner(cfg).eval()
    gpu = init_captioner(cfg, device='cuda').eval()
    gpu.load_state_dict(cpu.state_dict())
    g = torch.Generator().manual_seed(0)
    inputs = dict(teacher_feats=torch.randn(3, 4, 48, generator=g),
                  teacher_feats_mask=torch.ones(3, 4, dtype=torch.bool))
    on_gpu = {k: v.cuda() for k, v in inputs.items()}
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.no_grad():
        for decode in (dict(strategy='greedy'), dict(strategy='beam', beam_size=3)):
            ids = gpu.generate(on_gpu, **decode)
            assert ids.is_cuda
            assert torch.equal(ids.cpu(), cpu.generate(inputs, **decode))
        with torch.autocast('cuda', dtype=torch.float16):
            ids = gpu.generate(on_gpu, strategy='beam', beam_size=3)
    assert ids.is_cuda and ids.shape[0] == 3 and ids.min() >= 0
