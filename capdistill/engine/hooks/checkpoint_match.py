"""Stop a run whose checkpoint does not fit its model, before any weight is loaded."""
import re

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from capdistill.registry import HOOKS
from capdistill.utils.checkpoint import check_matching_state, state_dict_of


@HOOKS.register_module()
class CheckpointMatchHook(Hook):
    """The Runner loads ``load_from`` non-strictly: a checkpoint of another config only
    logs its mismatched tensors and the run goes on with the rest at their initial
    values. With this hook (a default hook of ``configs/_base_/default_runtime.py``,
    named by ``tools/train.py`` / ``tools/test.py`` after the file they load) a run uses
    the weights it was given or stops in one line naming what differs. A model with a
    ``check_checkpoint_state(state)`` method refuses the weights in its own words first
    (a distillation run given a captioner's). ``default_hooks=dict(checkpoint_match=None)``
    restores mmengine's partial loading."""

    priority = 'VERY_HIGH'

    def __init__(self, source='the checkpoint'):
        self.source = source  # how the error names the file

    def after_load_checkpoint(self, runner, checkpoint):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        # mmengine's own key revision (``module.`` prefixes of DDP-saved weights)
        state = {re.sub(r'^module\.', '', k): v for k, v in state_dict_of(checkpoint).items()}
        own_check = getattr(model, 'check_checkpoint_state', None)
        if own_check is not None:
            own_check(state)
        check_matching_state(model.state_dict(), state, self.source)


def require_matching_checkpoint(cfg, source):
    """``cfg``'s :class:`CheckpointMatchHook`, naming ``source`` in its errors; a config
    whose ``default_hooks`` switch it off (``checkpoint_match=None``) is left so."""
    if cfg.get('default_hooks') is None:
        cfg.default_hooks = {}
    hooks = cfg.default_hooks
    if 'checkpoint_match' not in hooks or hooks['checkpoint_match'] is not None:
        hooks['checkpoint_match'] = dict(type='CheckpointMatchHook', source=source)
    return cfg
