"""Reading checkpoints with clear errors."""
import os
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


def _warn_if_foreign(filename):
    real = os.path.realpath(filename)
    if real in _WARNED or any(real.startswith(d + os.sep) for d in _TRUSTED_DIRS):
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
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
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
    own = model.state_dict()
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
    model.load_state_dict(state)
