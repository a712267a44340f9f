"""Reading checkpoints with clear errors."""
import os
import zipfile

import torch


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing or cannot be read."""


def load_full_checkpoint(filename, map_location='cpu'):
    """Load a full mmengine checkpoint (trusted: it may execute code from the file)."""
    filename = os.path.expanduser(str(filename))
    if not os.path.isfile(filename):
        raise CheckpointError(f'Checkpoint not found: {filename}. Check the path, or train '
                              'the model first (tools/train.py writes it to the work dir).')
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
