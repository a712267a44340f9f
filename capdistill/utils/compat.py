"""Work-arounds for known frictions between mmengine 0.10, torch >= 2.6 and torchvision.

Each patch is idempotent and does nothing where it is not needed.
"""
import os
import sys

import torch


def patch_torchvision():
    """Let a CUDA torchvision wheel import beside a CPU torch.

    PyPI's torchvision registers fake kernels for ``nms``/``qnms`` whose schemas the
    CPU torch lacks, so ``import torchvision`` fails, and with it open_clip, timm and
    mmengine's Runner. Defining the two schemas first is enough; torchvision's
    compiled ops stay unavailable, and nothing here needs them.
    """
    try:
        import torchvision  # noqa: F401
        return
    except RuntimeError as exc:
        if 'torchvision::nms' not in str(exc):
            raise
    except ImportError:
        return
    for name in [m for m in sys.modules if m == 'torchvision' or m.startswith('torchvision.')]:
        del sys.modules[name]
    lib = torch.library.Library('torchvision', 'FRAGMENT')
    lib.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    lib.define('qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    patch_torchvision._lib = lib  # the schemas live as long as this object
    import torchvision  # noqa: F401,F811


def patch_checkpoint_loader():
    """Load one's own full mmengine checkpoints under torch >= 2.6.

    torch now defaults to ``weights_only=True`` and mmengine 0.10 calls it bare, so
    ``resume``/``load_from`` fail on mmengine's own objects in the checkpoint. Full
    checkpoints are trusted files of one's own run; models shared with others go out
    as safetensors (see ``tools/export_student.py``).
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    if getattr(CheckpointLoader, '_capdistill_patched', False):
        return

    @CheckpointLoader.register_scheme(prefixes='', force=True)
    def load_from_local(filename, map_location):
        from capdistill.utils.checkpoint import load_full_checkpoint
        return load_full_checkpoint(filename, map_location)

    CheckpointLoader._capdistill_patched = True


def apply_all():
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    patch_torchvision()
    patch_checkpoint_loader()
