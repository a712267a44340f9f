"""Reading checkpoints with clear errors."""
import glob
import os
import pickle
import re
import warnings
import zipfile

import torch


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing or cannot be read."""


class UntrustedCheckpointWarning(UserWarning):
    """A full (pickled) checkpoint loaded from outside the run's own work dir."""


_TRUSTED_DIRS = set()
_WARNED = set()


def trust_directory(path):
    """Mark a run's own work dir: its full checkpoints load without a warning."""
    _TRUSTED_DIRS.add(os.path.realpath(path))


def _own_run(real):
    """A checkpoint in a work dir of one's own mmengine run (``last_checkpoint`` or a run
    log folder beside it, the file owned by this user): nothing to warn about."""
    folder = os.path.dirname(real)
    made_by_run = (os.path.isfile(os.path.join(folder, 'last_checkpoint'))
                   or bool(glob.glob(os.path.join(glob.escape(folder), '*', 'vis_data'))))
    return made_by_run and (not hasattr(os, 'getuid') or os.stat(real).st_uid == os.getuid())


def _warn_if_foreign(filename):
    real = os.path.realpath(filename)
    if real in _WARNED or any(real.startswith(d + os.sep) for d in _TRUSTED_DIRS):
        return
    if _own_run(real):
        return
    _WARNED.add(real)
    warnings.warn(f'Loading full checkpoint {filename} from outside this run\'s work dir: this '
                  'unpickles the file, which can execute code from it. Load only checkpoints '
                  'you trust; share models as exported students (safetensors).',
                  UntrustedCheckpointWarning, stacklevel=3)


def load_full_checkpoint(filename, map_location='cpu'):
    """Load a full mmengine checkpoint (trusted: it may execute code from the file)."""
    filename = os.path.expanduser(str(filename))
    if not os.path.isfile(filename):
        raise CheckpointError(f'Checkpoint not found: {filename}. Check the path, or train '
                              'the model first (tools/train.py writes it to the work dir).')
    _warn_if_foreign(filename)
    try:
        return torch.load(filename, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, pickle.UnpicklingError) as exc:
        raise CheckpointError(
            f'Checkpoint {filename} is damaged or incomplete ({type(exc).__name__}: '
            f'{str(exc).splitlines()[0] if str(exc) else "no detail"}). Use an earlier '
            'checkpoint or retrain.') from None


def state_dict_of(checkpoint):
    """The model weights inside a loaded checkpoint (mmengine's or a plain dict)."""
    if isinstance(checkpoint, dict) and 'state_dict' in checkpoint:
        return checkpoint['state_dict']
    return checkpoint


def load_matching_state(model, state, source):
    """Load ``state`` into ``model``, or raise one readable error if they do not match.

    Checks names and shapes first, so a wrong config is reported as such instead of
    torch's list of every mismatched tensor.
    """
    check_matching_state(model.state_dict(), state, source)
    model.load_state_dict(state)


def check_matching_state(own, state, source):
    """Raise one :class:`CheckpointError` naming what differs when the weights ``state``
    do not have exactly the names and shapes of the model's state dict ``own``."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f'{k} {tuple(state[k].shape)} vs {tuple(v.shape)}' for k, v in own.items()
             if k in state and hasattr(state[k], 'shape') and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f'{len(x)} {what} (e.g. {x[0]})' for x, what in
                 ((missing, 'missing'), (unexpected, 'unexpected'), (wrong, 'of another shape'))
                 if x]
        raise CheckpointError(f'{source} does not match the model config: '
                              f'{"; ".join(parts)}. Use the config the checkpoint was trained '
                              'with.')


#: where a training wrapper keeps the captioner it deploys: a distillation run's student,
#: an SCST run's captioner
DEPLOYED_PREFIXES = ('student.', 'captioner.')


def strip_student_prefix(state):
    """The deployed captioner's weights of a training run's state dict, unprefixed:
    a distillation run's ``student.*`` (its connectors dropped) or an SCST run's
    ``captioner.*`` (its sampling step dropped). A plain captioner's is returned as is.
    """
    for prefix in DEPLOYED_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def load_student_checkpoint(model, path, source=None):
    """Load a student's weights, strictly, from a captioner run's checkpoint, a
    distillation checkpoint (its ``student.*``) or an exported ``.safetensors`` file."""
    if str(path).endswith('.safetensors'):
        from safetensors.torch import load_file
        if not os.path.isfile(path):
            raise CheckpointError(f'Checkpoint not found: {path}.')
        state = load_file(path)
    else:
        state = strip_student_prefix(state_dict_of(load_full_checkpoint(path)))
    load_matching_state(model, state, source or f'Checkpoint {path}')
    return model


_NUMBER = re.compile(r'(\d+)(?=\.\w+$)')
_RUN = re.compile(r'(?:^|[\\/])work_dirs[\\/]([^\\/]+)')


def _number(path):
    match = _NUMBER.search(os.path.basename(path))
    return int(match.group(1)) if match else -1


def train_command_hint(path):
    """``python tools/train.py CONFIG`` for a path under ``work_dirs/<name>/`` when a config
    ``configs/**/<name>.py`` exists, else a generic hint."""
    match = _RUN.search(str(path))
    if match:
        name = match.group(1)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        found = sorted(glob.glob(os.path.join(root, 'configs', '**', f'{name}.py'),
                                 recursive=True))
        if found:
            return f'train it first: python tools/train.py {os.path.relpath(found[0], root)}'
        return f'train it first: python tools/train.py <the config of {name}>'
    return 'train it first with python tools/train.py <its config>'


def resolve_checkpoint(spec, what='Checkpoint', key=None):
    """The checkpoint file a config entry names.

    ``spec`` is one of:

    * a file path;
    * a glob, e.g. ``work_dirs/RUN/best_CIDEr_epoch_*.pth``: of the matches, the one
      with the highest epoch/iteration number (the last number in the file name);
    * ``work_dirs/RUN/best``: the ``best_*.pth`` in that folder (mmengine keeps one per
      metric; several metrics is an error listing them);
    * ``work_dirs/RUN/latest``: the file named in mmengine's ``last_checkpoint``, else
      the ``epoch_N.pth``/``iter_N.pth`` with the highest N.

    ``what`` (e.g. ``'Teacher checkpoint'``) and ``key`` (the config key, e.g.
    ``'model.teacher_ckpt'``) name it in errors. Missing: ``FileNotFoundError``, one line.
    """
    where = f' ({key})' if key else ''
    spec = os.path.expanduser(str(spec))
    if os.path.isfile(spec):
        return spec
    folder, last = os.path.split(spec)
    if glob.has_magic(spec):
        found = [p for p in glob.glob(spec) if os.path.isfile(p)]
        if found:
            return max(found, key=lambda p: (_number(p), p))
        raise FileNotFoundError(f'{what} not found: no file matches {spec}{where}; '
                                f'{train_command_hint(spec)}.')
    if last in ('best', 'latest') and os.path.isdir(folder):
        if last == 'best':
            found = sorted(glob.glob(os.path.join(folder, 'best_*.pth')))
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise FileNotFoundError(
                    f'{what}{where}: {spec} is ambiguous, {folder} holds several best '
                    f'checkpoints ({", ".join(os.path.basename(p) for p in found)}); name one '
                    'of them.')
        else:
            pointer = os.path.join(folder, 'last_checkpoint')
            if os.path.isfile(pointer):
                with open(pointer) as f:
                    named = f.read().strip()
                for candidate in (named, os.path.join(folder, os.path.basename(named))):
                    if named and os.path.isfile(candidate):
                        return candidate
            found = [p for pattern in ('epoch_*.pth', 'iter_*.pth')
                     for p in glob.glob(os.path.join(folder, pattern))]
            if found:
                return max(found, key=lambda p: (_number(p), p))
        raise FileNotFoundError(f'{what} not found: {folder} holds no {last} checkpoint'
                                f'{where}; {train_command_hint(spec)}.')
    raise FileNotFoundError(f'{what} not found: {spec}{where}; {train_command_hint(spec)}, or '
                            'name a file, a glob, or work_dirs/RUN/best or work_dirs/RUN/latest.')
