"""capdistill: knowledge distillation for video captioning, on mmengine.

Importing the package changes nothing outside it, so it can live beside other
OpenMMLab code. A run started by capdistill (every script under ``tools/``, or your own
script) first calls :func:`setup_runtime`.
"""

__version__ = '0.1.0'


def setup_runtime():
    """Prepare this process for a capdistill run (idempotent).

    Applies, for the whole process:

    * mmengine's local checkpoint loader reads full checkpoints with
      ``weights_only=False`` (torch >= 2.6 otherwise refuses mmengine's own objects in
      them, so ``resume``/``load_from`` fail);
    * local files (checkpoints, ``last_checkpoint``) are written atomically;
    * ``HF_HUB_OFFLINE=1`` unless already set (nothing downloads at run time);
    * a CUDA torchvision wheel beside a CPU torch imports again (no-op elsewhere), and
      torchvision is not imported until something uses it (mmengine's environment log
      reads its version from its ``version.py``);
    * a config's text is formatted (yapf) once per distinct text instead of at every
      log line and checkpoint.

    Call it before building an mmengine ``Runner`` from a capdistill config in your own
    script; the tools call it themselves.
    """
    from .utils import compat
    compat.apply_all()
