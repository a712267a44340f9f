"""Batching: lists of per-sample tensors from the loader -> stacked tensors on device."""
import torch
from mmengine.model import BaseDataPreprocessor

from mmengine.registry import MODELS as MMENGINE_MODELS

from capdistill.datasets.transforms import TextList
from capdistill.registry import MODELS


@MODELS.register_module()
class CaptionDataPreprocessor(BaseDataPreprocessor):
    """Stack ``inputs`` tensors and caption ``tokens``; keep ids and references as lists."""

    def forward(self, data, training=False):
        inputs = {k: torch.stack(v) if isinstance(v, (list, tuple)) else v
                  for k, v in data['inputs'].items()}
        samples = dict(data.get('data_samples') or {})
        for key in ('refs', 'obj_words', 'act_words'):
            if key in samples:
                samples[key] = self._whole_lists(samples[key], len(samples['video_id']))
        if isinstance(samples.get('tokens'), (list, tuple)):
            samples['tokens'] = torch.stack(samples['tokens'])
        if 'weight' in samples:
            samples['weight'] = torch.as_tensor(samples['weight'], dtype=torch.float32)
        if 'labeled' in samples:  # False: a video without captions (dataset unlabeled_ids)
            samples['labeled'] = torch.as_tensor(samples['labeled'], dtype=torch.bool)
        return dict(inputs=self.cast_data(inputs), data_samples=self.cast_data(samples))

    @staticmethod
    def _whole_lists(values, batch):
        # Datasets wrap per-sample string lists in TextList so that collation keeps them
        # whole; pseudo_collate transposes plain lists into tuples, which are unusable.
        if len(values) != batch or not all(isinstance(v, (TextList, list)) for v in values):
            raise ValueError('Per-sample string lists (references) reached the model '
                             'transposed by the collate function; wrap them in '
                             'capdistill.datasets.transforms.TextList in the pipeline.')
        return [list(v) for v in values]


# mmengine's BaseModel builds ``data_preprocessor`` dicts through its root registry; also
# registering there lets captioners be built outside a 'capdistill' default scope
# (e.g. as teachers/students by STUDENTS.build, or from plain Python).
MMENGINE_MODELS.register_module(module=CaptionDataPreprocessor, force=True)
