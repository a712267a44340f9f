"""Batching: lists of per-sample tensors from the loader -> stacked tensors on device."""
import torch
from mmengine.model import BaseDataPreprocessor

from mmengine.registry import MODELS as MMENGINE_MODELS

from capdistill.registry import MODELS


@MODELS.register_module()
class CaptionDataPreprocessor(BaseDataPreprocessor):
    """Stack ``inputs`` tensors and caption ``tokens``; keep ids and references as lists."""

    def forward(self, data, training=False):
        inputs = {k: torch.stack(v) if isinstance(v, (list, tuple)) else v
                  for k, v in data['inputs'].items()}
        samples = dict(data.get('data_samples') or {})
        if isinstance(samples.get('tokens'), (list, tuple)):
            samples['tokens'] = torch.stack(samples['tokens'])
        if 'weight' in samples:
            samples['weight'] = torch.as_tensor(samples['weight'], dtype=torch.float32)
        return dict(inputs=self.cast_data(inputs), data_samples=self.cast_data(samples))


# mmengine's BaseModel builds ``data_preprocessor`` dicts through its root registry; also
# registering there lets captioners be built outside a 'capdistill' default scope
# (e.g. as teachers/students by STUDENTS.build, or from plain Python).
MMENGINE_MODELS.register_module(module=CaptionDataPreprocessor, force=True)
