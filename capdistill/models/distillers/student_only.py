"""``dict(type='DistilledStudent', student=..., checkpoint=...)``: the captioner a training
run deploys, alone, for testing and deployment: a distillation run's student (no teacher,
no teacher checkpoint) or an SCST run's captioner (no reward data, no starting checkpoint)."""
from torch import nn

from capdistill.registry import MODELS, STUDENTS
from capdistill.utils import load_student_checkpoint

#: training wrappers -> the key of the captioner they deploy (their checkpoints prefix its
#: weights with it: ``student.*``, ``captioner.*``; see ``strip_student_prefix``)
DEPLOYED_KEY = {'DistillAlgorithm': 'student', 'SelfCriticalCaptioner': 'captioner'}


def _type(model_cfg):
    return str(model_cfg.get('type', '')).rpartition('.')[2] if hasattr(model_cfg, 'get') else ''


@MODELS.register_module(name='DistilledStudent')
def build_distilled_student(student, checkpoint=None, data_preprocessor=None):
    """Build the deployed captioner config of a training config and load its weights.

    ``checkpoint``: a distillation checkpoint (its ``student.*`` weights; connectors are
    training-only and dropped), an SCST checkpoint (its ``captioner.*``), a captioner
    checkpoint or an export (``.safetensors``); keys must match exactly.
    ``data_preprocessor`` replaces the captioner's own, so the batches are those the
    training run was evaluated with.
    """
    student = dict(student)
    if data_preprocessor is not None:
        student['data_preprocessor'] = data_preprocessor
    model = STUDENTS.build(student)
    if checkpoint is not None:
        load_student_checkpoint(model, checkpoint)
    return model


def deploys_a_wrapped_captioner(model_cfg):
    """Whether a model config is a training wrapper (distillation, SCST) whose test-time
    model is the captioner it wraps."""
    return _type(model_cfg) in DEPLOYED_KEY


def deployed_captioner_config(model_cfg):
    """The config of the captioner ``model_cfg`` deploys: a training wrapper's captioner,
    else ``model_cfg`` itself."""
    key = DEPLOYED_KEY.get(_type(model_cfg))
    return model_cfg[key] if key else model_cfg


def deployed_captioner_path(model_cfg):
    """Where the config of the captioner ``model_cfg`` deploys sits: ``'model'``, or a
    training wrapper's ``'model.student'`` / ``'model.captioner'``."""
    key = DEPLOYED_KEY.get(_type(model_cfg))
    return f'model.{key}' if key else 'model'


def deployed_model(model):
    """The captioner a built model deploys: a training wrapper's (its ``student`` or
    ``captioner``), else the model itself."""
    for key in DEPLOYED_KEY.values():
        if isinstance(getattr(model, key, None), nn.Module):
            return getattr(model, key)
    return model


def student_only_config(model_cfg, checkpoint=None):
    """The ``DistilledStudent`` model config of a training wrapper's model config."""
    cfg = dict(type='DistilledStudent', student=deployed_captioner_config(model_cfg),
               checkpoint=checkpoint)
    if model_cfg.get('data_preprocessor') is not None:
        cfg['data_preprocessor'] = model_cfg['data_preprocessor']
    return cfg


def is_distillation(model_cfg):
    """Whether a model config is a distillation algorithm's."""
    return _type(model_cfg) == 'DistillAlgorithm'
