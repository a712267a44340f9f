"""Checking a config before the Runner starts: misspelled keys and values of the wrong type.

mmengine passes unknown keys on silently in places (a new top-level key, ``train_cfg``
extras) and fails late in others (a decoding option at the first test batch). Here every
``dict(type=...)`` is checked against the signature of the class it names, dataloaders
against ``torch.utils.data.DataLoader``, and ``decode`` against the decoding functions;
an unknown key is reported with the closest valid names.
"""
import difflib
import inspect

from mmengine.config import ConfigDict

from capdistill.utils.values import is_int, is_real


class ConfigError(ValueError):
    """A config key or value that cannot be what the user meant."""


# Keys the Runner reads from a config (besides its own arguments), and this project's.
_EXTRA_TOP_LEVEL = {'runner_type', 'custom_imports', 'work_dir', 'launcher', 'cpu_threads',
                    'filename', 'text', 'pretty_text'}
# Keys a parent pops before building the child.
_POPPED = {'inputs', 'by_epoch', 'constructor', 'paramwise_cfg', '_scope_'}
# Dataloader keys mmengine's build_dataloader consumes itself.
_LOADER_EXTRA = {'dataset', 'sampler', 'batch_sampler', 'collate_fn', 'worker_init_fn'}
# Classes whose **kwargs end in a call that takes nothing more (CheckpointHook passes them
# to Runner.save_checkpoint, which fails at the first save).
_CLOSED = {'CheckpointHook'}
_LOOPS = {'train_cfg': 'EpochBasedTrainLoop', 'val_cfg': 'ValLoop', 'test_cfg': 'TestLoop'}


def runner_keys():
    """Top-level config keys the Runner (or this project) uses."""
    from mmengine.runner import Runner
    params = inspect.signature(Runner.__init__).parameters
    return (set(params) - {'self', 'cfg'}) | _EXTRA_TOP_LEVEL


def _suggest(key, valid, cutoff=0.6):
    close = difflib.get_close_matches(key, sorted(valid), n=3, cutoff=cutoff)
    return close


def _unknown(path, key, valid, owner):
    close = _suggest(key, valid)
    where = f'{path}.{key}' if path else key
    hint = (f"; did you mean {' or '.join(repr(_join(path, c)) for c in close)}?" if close
            else f'; {owner} takes: {", ".join(sorted(valid))}')
    return ConfigError(f'unknown config key {where!r} ({owner} has no such option){hint}')


def _join(path, key):
    return f'{path}.{key}' if path else key


def _accepted(func):
    """``(names, annotations/defaults, open)`` of a callable: ``open`` when it takes **kwargs
    that go nowhere we can see."""
    names, params = set(), {}
    if inspect.isclass(func):
        chain = [c for c in func.__mro__ if '__init__' in vars(c)]
        for cls in chain:
            if cls is object:
                return names, params, True
            try:
                sig = inspect.signature(vars(cls)['__init__'])
            except (TypeError, ValueError):
                return names, params, True
            var_kw = False
            for p in sig.parameters.values():
                if p.kind is p.VAR_KEYWORD:
                    var_kw = True
                elif p.kind is not p.VAR_POSITIONAL and p.name != 'self':
                    names.add(p.name)
                    params.setdefault(p.name, p)
            if not var_kw:
                return names, params, False
        return names, params, True
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return names, params, True
    open_ = False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            open_ = True
        elif p.kind is not p.VAR_POSITIONAL:
            names.add(p.name)
            params[p.name] = p
    return names, params, open_


def _find_type(name):
    """The class a ``type=`` string names, from any registry in reach, else None."""
    if not isinstance(name, str):
        return name if callable(name) else None
    from mmengine import registry as mm

    from capdistill import registry as own
    regs = list(own._ALL.values()) + [getattr(own, n) for n in own._PASSTHROUGH]
    regs += [getattr(mm, n) for n in ('MODELS', 'DATASETS', 'TRANSFORMS', 'HOOKS', 'LOOPS',
                                      'OPTIMIZERS', 'OPTIM_WRAPPERS', 'PARAM_SCHEDULERS',
                                      'METRICS', 'VISBACKENDS', 'VISUALIZERS')]
    for reg in regs:
        try:
            reg.import_from_location()
            found = reg.get(name)
        except Exception:  # a registry that cannot import its modules: checked at build
            found = None
        if found is not None:
            return found
    return None


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_value(path, value, param):
    """A string where a number is expected (``max_epochs=two``)."""
    if not isinstance(value, str):
        return
    ann, default = param.annotation, param.default
    wants_number = ann in (int, float) or (_is_number(default) and default is not None)
    if wants_number:
        kind = 'an integer' if (ann is int or isinstance(default, int)) else 'a number'
        raise ConfigError(f'config key {path!r} must be {kind}, got {value!r}')


def _check_keys(path, cfg, func, owner, extra=()):
    names, params, open_ = _accepted(func)
    open_ = open_ and getattr(func, '__name__', None) not in _CLOSED
    for key, value in cfg.items():
        if key == 'type' or key in _POPPED or key in extra:
            continue
        if key not in names:
            if open_:
                continue
            raise _unknown(path, key, names | set(extra), owner)
        if key in params:
            _check_value(_join(path, key), value, params[key])


def _decode_names():
    from capdistill.models.captioners import decoding
    names = set()
    for func in (decoding.decode, decoding.greedy_decode, decoding.beam_search):
        names |= _accepted(func)[0]
    return (names - {'head', 'memory', 'mem_mask', 'bos_id', 'eos_id', 'max_steps',
                     'banned_ids', 'return_scores'}) | {'ban_special'}


def _walk(path, node, context=None):
    if isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            _walk(f'{path}[{i}]', item)
        return
    if not isinstance(node, dict):
        return
    if context == 'dataloader':
        from torch.utils.data import DataLoader
        # num_workers='auto' is resolved from the cores when a run starts
        # (setup.apply_cpu_defaults)
        given = {k: v for k, v in node.items() if not (k == 'num_workers' and v == 'auto')}
        _check_keys(path, given, DataLoader, 'a dataloader', extra=_LOADER_EXTRA)
    elif context == 'decode':
        valid = _decode_names()
        for key in node:
            if key not in valid:
                raise _unknown(path, key, valid, 'decoding')
        from capdistill.models.captioners.decoding import (DecodeSettingsError,
                                                           check_decode_settings)
        try:
            check_decode_settings(node, path=path)
        except DecodeSettingsError as exc:
            raise ConfigError(str(exc)) from None
    elif 'type' in node:
        cls = _find_type(node['type'])
        if cls is not None:
            name = getattr(cls, '__name__', str(node['type']))
            _check_keys(path, node, cls, name)
    for key, value in node.items():
        sub = 'decode' if key == 'decode' and isinstance(value, dict) else None
        _walk(_join(path, key), value, sub)


def _at_least(low, kind='an integer'):
    test = is_int if kind == 'an integer' else is_real
    return (lambda v: test(v) and v >= low), f'{kind} >= {low}'


# Values that would fail deep inside mmengine or torch (a ZeroDivisionError at the first
# validation, a DataLoader ValueError), or silently do nothing (max_epochs=0 trains nothing).
_VALUE_RULES = {
    'train_cfg.max_epochs': _at_least(1),
    'train_cfg.max_iters': _at_least(1),
    'train_cfg.val_interval': _at_least(1),
    'train_cfg.val_begin': _at_least(0),
    'optim_wrapper.optimizer.lr': _at_least(0, 'a number'),
    'optim_wrapper.optimizer.weight_decay': _at_least(0, 'a number'),
    'optim_wrapper.accumulative_counts': _at_least(1),
}
for _loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
    _VALUE_RULES[f'{_loader}.batch_size'] = _at_least(1)
    _VALUE_RULES[f'{_loader}.num_workers'] = (lambda v: v == 'auto' or (is_int(v) and v >= 0),
                                              "an integer >= 0 or 'auto'")


def _check_values(cfg):
    for path, (valid, what) in _VALUE_RULES.items():
        node = cfg
        for part in path.split('.'):
            node = node.get(part) if hasattr(node, 'get') else None
        if node is not None and not valid(node):
            raise ConfigError(f'config key {path!r} is {node!r}; it must be {what}')


def check_config(cfg, option_keys=()):
    """Raise ``ConfigError`` for a misspelled key or a wrongly typed value in ``cfg``.

    ``option_keys`` are the dotted keys given with ``--cfg-options``: a top-level key
    there that the config does not have is an error (in a config file it may be a
    variable, so only a near-miss of a Runner key is).
    """
    known = runner_keys()
    given_top = {k.split('.')[0] for k in option_keys}
    for key in cfg.keys():
        if key in known or key.startswith('_'):
            continue
        if key in given_top:
            raise _unknown('', key, known, 'the Runner')
        close = _suggest(key, known, cutoff=0.85)
        if close:
            raise ConfigError(f'unknown config key {key!r}; did you mean {close[0]!r}?')
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if isinstance(cfg.get(key), dict):
            _walk(key, cfg[key], 'dataloader')
    for key, loop in _LOOPS.items():
        node = cfg.get(key)
        if isinstance(node, dict):
            if 'type' not in node:
                node = ConfigDict(node, type=('IterBasedTrainLoop' if 'max_iters' in node
                                              else loop))
            _walk(key, node)
    for key in sorted(set(cfg.keys()) & known - set(_LOOPS)
                      - {'train_dataloader', 'val_dataloader', 'test_dataloader'}):
        _walk(key, cfg[key])
    _check_values(cfg)


def check_options(cfg, options):
    """Check ``--cfg-options`` against ``cfg`` before they are merged: a string given
    where the config has a number is an error."""
    for key, value in options.items():
        node = cfg
        for part in key.split('.'):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                node = None
                break
        if node is not None and _is_number(node) and isinstance(value, str):
            kind = 'an integer' if isinstance(node, int) else 'a number'
            raise ConfigError(f'--cfg-options {key}={value}: must be {kind} '
                              f'(the config has {node!r})')
