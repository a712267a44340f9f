"""Command-line helpers: the tools' shared options, and one clear line for the errors
users can fix. Importing it imports neither torch nor mmengine, so ``--help`` is quick."""
import argparse
import functools
import logging
import math
import os
import re
import sys
import traceback

_BUILD_PREFIX = re.compile(r'class `\w+` in [\w./\\-]+\.py: ')


def int_at_least(low):
    """An argparse ``type``: an integer ``>= low`` (a count or a size), else argparse's
    one-line usage error naming the flag."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f'must be an integer >= {low}, got {text!r}')
        return value
    parse.__name__ = f'integer >= {low}'
    return parse


def positive_number(text):
    """An argparse ``type``: a finite number ``> 0`` (a rate, a tolerance)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f'must be a number > 0, got {text!r}')
    return value


def unknown_type_message(text):
    """:func:`capdistill.registry.unknown_type_message` (imported when an error needs it)."""
    from capdistill.registry import unknown_type_message as message
    return message(text)


def add_cfg_options(parser, example='train_cfg.max_epochs=2'):
    """``--cfg-options KEY=VALUE ...``, parsed by mmengine's ``DictAction`` (a dict), for
    :func:`capdistill.engine.setup.read_config`."""
    from mmengine.config import DictAction  # mmengine's config module alone: no torch
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help=f'override config entries, e.g. {example}')
    return parser


def add_common_args(parser, cfg_example):
    """The options tools/train.py and tools/test.py share."""
    add_cfg_options(parser, cfg_example)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    # torchrun sets LOCAL_RANK; older launchers pass either spelling
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def one_line(exc):
    """The user-facing message of ``exc`` without mmengine's build-location prefixes."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    hint = unknown_type_message(text)
    if hint:
        return hint
    return _BUILD_PREFIX.sub('', text).strip()


def user_errors():
    """Exceptions that mean bad input rather than a bug."""
    from capdistill.datasets.annotations import DataError
    from capdistill.engine.config_check import ConfigError
    from capdistill.engine.hooks.run_guards import NonFiniteLossError
    from capdistill.registry import UnknownTypeError
    from capdistill.utils.checkpoint import CheckpointError
    from capdistill.utils.device import DeviceError
    errors = [DataError, UnknownTypeError, CheckpointError, NonFiniteLossError, FileNotFoundError,
              NotADirectoryError, PermissionError, ConfigError, DeviceError]
    # build-time refusals of model configs (distillation wiring, data a loss term needs)
    from capdistill.models.distillers.recorders import RecorderError
    from capdistill.utils.requirements import ModelConfigError
    errors += [ModelConfigError, RecorderError]
    try:
        from capdistill.evaluation.caption_scorer import (JavaNotFoundError,
                                                          SpiceModelsMissingError,
                                                          UnknownMetricError)
        errors += [JavaNotFoundError, SpiceModelsMissingError, UnknownMetricError]
    except ImportError:
        pass
    return tuple(errors)


def friendly_main(main):
    """Run ``main``; bad input exits with status 1 and one line on stderr."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except SystemExit:  # argparse's --help and usage errors: nothing to import for them
            raise
        except KeyboardInterrupt:
            log = _log_details()
            where = f'; log: {log}' if log else ''
            print(f'error: interrupted (Ctrl-C){where}. Continue a training run with '
                  '--resume.', file=sys.stderr)
            sys.exit(130)
        except user_errors() as exc:
            _fail(exc)
        except KeyError as exc:  # mmengine's own unknown-type error
            if unknown_type_message(str(exc)) is None:
                raise
            _fail(exc)
        except Exception as exc:
            if type(exc).__name__ != 'SafetensorError':
                raise
            from capdistill.utils.checkpoint import CheckpointError
            _fail(CheckpointError(f'a .safetensors file is damaged or incomplete '
                                  f'({str(exc).splitlines()[0]}); export it again'))

    return wrapper


def _log_details():
    """Write the current exception's traceback into the run's log file; returns its path.

    The terminal gets one line; whoever debugs the run finds the full story in the log.
    """
    try:
        from mmengine.logging import MMLogger
        logger = MMLogger.get_current_instance()
    except Exception:  # no run started yet: nothing to write into
        return None
    path = None
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                handler.stream.write(traceback.format_exc())
                handler.flush()
            finally:
                handler.release()
            rel = os.path.relpath(handler.baseFilename)
            path = path or (handler.baseFilename if rel.startswith('..') else rel)
    return path


def _fail(exc):
    log = _log_details()
    where = f' (details: {log})' if log else ''
    print(f'error: {one_line(exc)}{where}', file=sys.stderr)
    sys.exit(1)


def tool_inputs(config, checkpoint=None, config_folder=False):
    """A tool's CONFIG and CHECKPOINT arguments, checked before anything is built.

    ``checkpoint`` may also name a run's checkpoint as a config's ``teacher_ckpt`` does
    (``work_dirs/RUN/best``, ``work_dirs/RUN/latest``, a glob): the file it resolves to is
    returned. ``config_folder``: an exported student's folder is a config too. Missing:
    ``FileNotFoundError``, one line.
    """
    import glob

    from capdistill.utils.checkpoint import resolve_checkpoint
    if not (os.path.isfile(config) or (config_folder and os.path.isdir(config))):
        raise FileNotFoundError(f'Config file not found: {config}')
    if checkpoint is not None and not os.path.isfile(checkpoint):
        if not (glob.has_magic(checkpoint) or os.path.basename(checkpoint) in ('best', 'latest')):
            raise FileNotFoundError(f'Checkpoint file not found: {checkpoint}')
        checkpoint = resolve_checkpoint(checkpoint, 'Checkpoint')
    return config, checkpoint


def check_checkpoint_file(path):
    """Refuse a file that cannot be a checkpoint before any run starts, in one line.

    A ``.safetensors`` file must have a complete header and data; anything else must be a
    torch.save archive (zip) or a legacy pickle, not e.g. a text file renamed to ``.pth``.
    """
    from capdistill.utils.checkpoint import CheckpointError
    if not os.path.isfile(path):
        raise CheckpointError(f'Checkpoint not found: {path}')
    if path.endswith('.safetensors'):
        from safetensors import safe_open
        try:
            with safe_open(path, framework='pt') as f:
                f.keys()
        except Exception as exc:
            raise CheckpointError(f'{path} is not a complete safetensors file '
                                  f'({str(exc).splitlines()[0]}); export it again') from None
        return
    import zipfile
    with open(path, 'rb') as f:
        head = f.read(2)
    if not zipfile.is_zipfile(path) and head[:1] != b'\x80':
        raise CheckpointError(f'{path} is not a PyTorch checkpoint (neither a torch.save '
                              'archive nor a pickle); give the .pth file tools/train.py wrote')
