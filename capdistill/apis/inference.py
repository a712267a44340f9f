"""Loading a trained captioner for inference."""
from mmengine.config import Config
from mmengine.registry import DefaultScope

from capdistill.models.distillers import deployed_model  # noqa: F401  (part of the API)
from capdistill.registry import MODELS
from capdistill.utils import (load_full_checkpoint, load_matching_state, state_dict_of,
                              strip_student_prefix)
from capdistill.utils.device import check_device


def init_captioner(config, checkpoint=None, device='cpu'):
    """Build the deployed captioner of ``config`` and load ``checkpoint`` into it.

    Accepts a captioner config, a distillation config (its student alone is built:
    no teacher, no teacher checkpoint) or an SCST config (its captioner alone); the
    checkpoint is a full mmengine checkpoint of any of them. An exported student
    (``tools/export_student.py``: a ``.safetensors`` checkpoint, or its ``.json``/folder
    as ``config`` with no checkpoint) is loaded from its own json config, without
    unpickling; ``config`` is then ignored.
    """
    from .export import is_export, load_exported_student
    device = check_device(device)
    if is_export(checkpoint):
        return load_exported_student(checkpoint, device)
    if checkpoint is None and isinstance(config, str) and is_export(config):
        return load_exported_student(config, device)
    from capdistill.models.distillers import deploys_a_wrapped_captioner, student_only_config
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    model_cfg = cfg.model
    if deploys_a_wrapped_captioner(model_cfg):
        # the student (SCST: the captioner) alone: no teacher, no starting checkpoint
        model_cfg = student_only_config(model_cfg)
    with DefaultScope.overwrite_default_scope('capdistill'):
        model = MODELS.build(model_cfg)
    if checkpoint is not None:
        state = strip_student_prefix(state_dict_of(load_full_checkpoint(checkpoint)))
        load_matching_state(model, state, f'Checkpoint {checkpoint}')
    from .captioning import config_num_frames
    model.num_frames = config_num_frames(cfg)  # what caption_video samples per video
    return model.to(device).eval()
