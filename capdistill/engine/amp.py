"""Mixed precision on CPU: mmengine's AmpOptimWrapper supports accelerators only."""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper

from capdistill.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAutocastOptimWrapper(OptimWrapper):
    """Runs the forward pass under CPU autocast (bfloat16); no loss scaling is needed."""

    def __init__(self, *args, dtype='bfloat16', **kwargs):
        super().__init__(*args, **kwargs)
        self.dtype = getattr(torch, dtype)

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.dtype):
            yield
