"""capdistill: knowledge distillation for video captioning, on mmengine."""
from .utils import compat as _compat

_compat.apply_all()

__version__ = '0.1.0'
