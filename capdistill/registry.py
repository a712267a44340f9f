"""All registries of capdistill.

Runner-facing registries (``MODELS``, ``DATASETS``, ``TRANSFORMS``, ``METRICS``,
``HOOKS``, ``DATA_SAMPLERS``, ``FUNCTIONS``, ``LOOPS``) are children of mmengine's roots, so
``default_scope='capdistill'`` finds them.  The parts a model assembles itself
(backbones, heads, tokenizers, teachers, students, losses, connectors) live in
stand-alone registries with the same scope: mmengine allows one child per scope
under a parent, and a second child under ``MODELS`` would be shadowed by it.
Every registry imports its modules lazily through ``locations``.
"""
import difflib
import importlib
import os
import re
import sys

from mmengine import registry as mmengine_registry
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry, build_from_cfg, build_model_from_cfg

SCOPE = 'capdistill'
_UNKNOWN = re.compile(r'(\S+) is not in the (\S+)::(\S+) registry')


def unknown_type_message(message: str):
    """Return a one-line hint for mmengine's unknown-type KeyError, else None.

    The hint names the registry and the closest registered names.
    """
    match = _UNKNOWN.search(message)
    if match is None:
        return None
    name, scope, reg_name = match.groups()
    name = name.strip('`\'"')
    registry = _ALL.get((scope, reg_name))
    if registry is None:
        return f'{name!r} is not registered in {scope}::{reg_name}.'
    return _format_unknown(name, registry)


def _format_unknown(name, registry, fallback=False):
    known = sorted(registry.module_dict)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f' Did you mean: {", ".join(close)}?' if close else ''
    also = ' (nor in the MODELS registry tree)' if fallback else ''
    return (f'Unknown type {name!r} in the {registry.scope}::{registry.name} '
            f'registry{also}.{hint} Registered: {", ".join(known) or "(none)"}.')


class UnknownTypeError(KeyError):
    """A config ``type=`` that names nothing registered."""

    def __str__(self):
        return self.args[0]


def _checked(build_func, fallback=False):
    """``build_func`` with a did-you-mean error for unknown types.

    With ``fallback``, a type the part registry does not hold is looked up in the
    ``MODELS`` tree (capdistill's ``MODELS``, then mmengine's root and, for
    ``type='scope.Name'``, that OpenMMLab scope's registry), so a config can use a module
    of another OpenMMLab project or a user's ``MODELS``-registered class as a part.
    """

    def build(cfg, *args, registry, **kwargs):
        obj_type = cfg.get('type') if hasattr(cfg, 'get') else None
        if not isinstance(obj_type, str):
            return build_func(cfg, *args, registry=registry, **kwargs)
        registry.import_from_location()
        scope = obj_type.split('.', 1)[0] if '.' in obj_type else None
        if registry.get(obj_type) is not None:
            return build_func(cfg, *args, registry=registry, **kwargs)
        if fallback and MODELS.get(obj_type) is not None:
            return build_model_from_cfg(cfg, *args, registry=MODELS, **kwargs)
        name = obj_type.split('.', 1)[1] if scope else obj_type
        if scope is not None and scope != registry.scope:
            other = MMENGINE_MODELS._children.get(scope)  # mmengine imported {scope}.registry
            if other is not None:
                raise UnknownTypeError(_format_unknown(name, other))
            raise UnknownTypeError(
                f'Unknown type {obj_type!r}: no registry of scope {scope!r} is loaded. Install '
                f'the package that provides it, or import the module that registers it with '
                f"custom_imports=dict(imports=['...']).")
        raise UnknownTypeError(_format_unknown(name, registry, fallback))

    return build


def _part_registry(name, location):
    return Registry(name, scope=SCOPE, build_func=_checked(build_model_from_cfg, fallback=True),
                    locations=[location])


# What the Runner builds.
MODELS = Registry('model', parent=MMENGINE_MODELS, scope=SCOPE,
                  locations=['capdistill.models'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope=SCOPE,
                    locations=['capdistill.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope=SCOPE,
                      locations=['capdistill.datasets.transforms'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope=SCOPE,
                   locations=['capdistill.evaluation'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope=SCOPE,
                 locations=['capdistill.engine.hooks'])
DATA_SAMPLERS = Registry('data sampler', parent=MMENGINE_DATA_SAMPLERS, scope=SCOPE,
                         locations=['capdistill.datasets'])
FUNCTIONS = Registry('function', parent=MMENGINE_FUNCTIONS, scope=SCOPE,
                     locations=['capdistill.datasets'])
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, scope=SCOPE, locations=['capdistill.engine.loops'])

# Runner parts capdistill does not extend yet; children so the 'capdistill' scope
# resolves without mmengine's fallback warnings.
_PASSTHROUGH = ['RUNNERS', 'RUNNER_CONSTRUCTORS', 'OPTIMIZERS', 'OPTIM_WRAPPERS',
                'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'EVALUATOR',
                'VISUALIZERS', 'VISBACKENDS', 'LOG_PROCESSORS', 'MODEL_WRAPPERS',
                'WEIGHT_INITIALIZERS', 'INFERENCERS', 'TASK_UTILS', 'STRATEGIES']
for _name in _PASSTHROUGH:
    _root = getattr(mmengine_registry, _name)
    globals()[_name] = Registry(_root.name, parent=_root, scope=SCOPE)

# What the models assemble themselves.
BACKBONES = _part_registry('backbone', 'capdistill.models.backbones')
HEADS = _part_registry('head', 'capdistill.models.captioners')
TEACHERS = _part_registry('teacher', 'capdistill.models.captioners')
STUDENTS = _part_registry('student', 'capdistill.models.captioners')
LOSSES = _part_registry('loss', 'capdistill.models.losses')
DISTILL_LOSSES = LOSSES  # caption and distillation losses share one namespace
CONNECTORS = _part_registry('connector', 'capdistill.models.distillers')
TOKENIZERS = Registry('tokenizer', scope=SCOPE, build_func=_checked(build_from_cfg),
                      locations=['capdistill.datasets.tokenizers'])

_ALL = {(r.scope, r.name): r for r in (
    MODELS, DATASETS, TRANSFORMS, METRICS, HOOKS, DATA_SAMPLERS, FUNCTIONS, LOOPS, BACKBONES,
    HEADS, TEACHERS, STUDENTS, LOSSES, CONNECTORS, TOKENIZERS)}


class PluginImportError(FileNotFoundError):
    """A module named in ``custom_imports`` cannot be found."""


def import_custom_modules(cfg):
    """Import the modules of ``cfg.custom_imports``, which registers their classes.

    ``Config.fromfile`` imports them only as the file states them; tools call this again
    after ``--cfg-options`` so ``custom_imports.imports=[...]`` given on the command line
    takes effect. The current directory is searched last, as ``python -m`` would, so a
    ``projects.<name>`` folder imports when a tool runs from the repository root.
    """
    custom = cfg.get('custom_imports') or {}
    imports = custom.get('imports', [])
    if isinstance(imports, str):
        imports = [imports]
    allow_failed = custom.get('allow_failed_imports', False)
    if imports and os.getcwd() not in sys.path and '' not in sys.path:
        sys.path.append(os.getcwd())
    for name in imports:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ''
            if not (name == missing or name.startswith(missing + '.')):
                raise  # the plugin itself imports something that is missing
            if allow_failed:
                print(f'warning: custom_imports: {name} not imported ({exc})', file=sys.stderr)
                continue
            raise PluginImportError(
                f'custom_imports: cannot import {name!r} ({exc}). Run from the folder that '
                'contains it or add that folder to PYTHONPATH.') from None
