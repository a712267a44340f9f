"""Loading a trained captioner for inference."""
from mmengine.config import Config
from mmengine.registry import DefaultScope

from capdistill.registry import MODELS
from capdistill.utils import load_full_checkpoint, load_matching_state, state_dict_of


def deployed_model(model):
    """The captioner that runs at test time (the student of a distillation algorithm)."""
    return getattr(model, 'student', model)


def init_captioner(config, checkpoint=None, device='cpu'):
    """Build the deployed captioner of ``config`` and load ``checkpoint`` into it.

    Accepts a captioner config or a distillation config (its student is returned);
    the checkpoint is a full mmengine checkpoint of either. An exported student
    (``tools/export_student.py``: a ``.safetensors`` checkpoint, or its ``.json``/folder
    as ``config`` with no checkpoint) is loaded from its own json config, without
    unpickling; ``config`` is then ignored.
    """
    from .export import is_export, load_exported_student
    if is_export(checkpoint):
        return load_exported_student(checkpoint, device)
    if checkpoint is None and isinstance(config, str) and is_export(config):
        return load_exported_student(config, device)
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    model_cfg = cfg.model
    if model_cfg.get('type') == 'DistillAlgorithm':
        model_cfg = model_cfg.student
    with DefaultScope.overwrite_default_scope('capdistill'):
        model = MODELS.build(model_cfg)
    if checkpoint is not None:
        state = state_dict_of(load_full_checkpoint(checkpoint))
        if any(k.startswith('student.') for k in state):
            state = {k[len('student.'):]: v for k, v in state.items() if k.startswith('student.')}
        load_matching_state(model, state, f'Checkpoint {checkpoint}')
    return model.to(device).eval()
