"""The device a tool or API call is asked to run on, checked before any work starts."""
import torch


class DeviceError(ValueError):
    """A device name this machine cannot run on."""


def check_device(device):
    """``torch.device(device)`` when this machine has it, else :class:`DeviceError` in
    one line (a CUDA device without CUDA would otherwise fail at the first tensor moved,
    or count every video of an extraction as failed)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f'device {device!r} is not a device name; use cpu, cuda or '
                          'cuda:N') from None
    if dev.type == 'cuda':
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f'device {device!r}: this machine has no CUDA device (torch '
                              f'{torch.__version__}); use cpu')
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f'device {device!r}: this machine has {count} CUDA device(s), '
                              f'cuda:0 to cuda:{count - 1}')
        return dev
    try:
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as exc:
        # torch's first sentence says why ("Torch not compiled with XPU enabled")
        why = (str(exc).strip().split('. ')[0].splitlines() or [type(exc).__name__])[0]
        raise DeviceError(f'device {device!r} is not available here ({why[:120]}); use '
                          'cpu') from None
    return dev
