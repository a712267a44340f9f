"""``dict(type='DistilledStudent', student=..., checkpoint=...)``: a distillation run's
student alone, for testing and deployment (no teacher, no teacher checkpoint)."""
from capdistill.registry import MODELS, STUDENTS
from capdistill.utils import load_student_checkpoint


@MODELS.register_module(name='DistilledStudent')
def build_distilled_student(student, checkpoint=None, data_preprocessor=None):
    """Build the student config of a distillation config and load its weights.

    ``checkpoint``: a distillation checkpoint (its ``student.*`` weights; connectors are
    training-only and dropped), a captioner checkpoint or an export (``.safetensors``);
    keys must match exactly. ``data_preprocessor`` replaces the student's own, so the
    batches are those the distillation run was evaluated with.
    """
    student = dict(student)
    if data_preprocessor is not None:
        student['data_preprocessor'] = data_preprocessor
    model = STUDENTS.build(student)
    if checkpoint is not None:
        load_student_checkpoint(model, checkpoint)
    return model


def student_only_config(model_cfg, checkpoint=None):
    """The ``DistilledStudent`` model config of a ``DistillAlgorithm`` model config."""
    cfg = dict(type='DistilledStudent', student=model_cfg['student'], checkpoint=checkpoint)
    if model_cfg.get('data_preprocessor') is not None:
        cfg['data_preprocessor'] = model_cfg['data_preprocessor']
    return cfg


def is_distillation(model_cfg):
    """Whether a model config is a distillation algorithm's."""
    return hasattr(model_cfg, 'get') and model_cfg.get('type') in (
        'DistillAlgorithm', 'capdistill.DistillAlgorithm')
