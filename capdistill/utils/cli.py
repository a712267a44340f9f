"""Command-line helpers: one clear line for the errors users can fix."""
import functools
import re
import sys

from capdistill.registry import unknown_type_message

_BUILD_PREFIX = re.compile(r'class `\w+` in [\w./\\-]+\.py: ')


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
    from capdistill.engine.hooks.run_guards import NonFiniteLossError
    from capdistill.registry import UnknownTypeError
    from capdistill.utils.checkpoint import CheckpointError
    errors = [DataError, UnknownTypeError, CheckpointError, NonFiniteLossError, FileNotFoundError,
              NotADirectoryError, PermissionError]
    # build-time refusals of model configs (distillation wiring, data a loss term needs)
    from capdistill.models.distillers.recorders import RecorderError
    from capdistill.utils.requirements import ModelConfigError
    errors += [ModelConfigError, RecorderError]
    try:
        from capdistill.evaluation.caption_scorer import (JavaNotFoundError,
                                                          SpiceModelsMissingError)
        errors += [JavaNotFoundError, SpiceModelsMissingError]
    except ImportError:
        pass
    return tuple(errors)


def friendly_main(main):
    """Run ``main``; bad input exits with status 1 and one line on stderr."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except user_errors() as exc:
            _fail(exc)
        except KeyError as exc:  # mmengine's own unknown-type error
            if unknown_type_message(str(exc)) is None:
                raise
            _fail(exc)

    return wrapper


def _fail(exc):
    print(f'error: {one_line(exc)}', file=sys.stderr)
    sys.exit(1)
