"""Masked pooling over token rows: the one implementation every module uses."""
import torch


def masked_pool(x, mask=None, how='mean', dim=1, keepdim=False):
    """Mean or max of ``x`` over ``dim``, counting only rows where ``mask`` is True.

    ``x`` ``(B, N, D)`` with ``mask`` ``(B, N)`` (None: every row valid) gives
    ``(B, D)`` (``(B, 1, D)`` with ``keepdim``). A fully padded sample pools to zeros
    with zero gradient, never to NaN, -inf or the dtype's minimum, so one empty video
    cannot poison a batch.
    """
    if how not in ('mean', 'max'):
        raise ValueError(f"pooling must be 'mean' or 'max', not {how!r}.")
    if mask is None:
        return x.mean(dim, keepdim=keepdim) if how == 'mean' else x.amax(dim, keepdim=keepdim)
    mask = mask.to(device=x.device, dtype=torch.bool)
    if mask.shape != x.shape[:-1]:
        raise ValueError(f'mask {tuple(mask.shape)} does not match the features '
                         f'{tuple(x.shape)} (expected {tuple(x.shape[:-1])}).')
    valid = mask.unsqueeze(-1)
    any_valid = valid.any(dim, keepdim=True)
    if how == 'mean':
        count = valid.sum(dim, keepdim=True).clamp(min=1).to(x.dtype)
        out = torch.where(valid, x, x.new_zeros(())).sum(dim, keepdim=True) / count
    else:
        # the lowest finite value (not -inf) keeps amax's gradient finite; empty rows -> 0
        low = torch.finfo(x.dtype).min if x.is_floating_point() else torch.iinfo(x.dtype).min
        out = torch.where(valid, x, x.new_full((), low)).amax(dim, keepdim=True)
        out = torch.where(any_valid, out, x.new_zeros(()))
    return out if keepdim else out.squeeze(dim)


__all__ = ['masked_pool']
