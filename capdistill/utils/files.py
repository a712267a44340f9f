"""Writing files so that readers never see a half-written one."""
import contextlib
import os
import os.path as osp
import tempfile


def _default_mode():
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_open(path, mode='wb', encoding=None, fsync=False):
    """A file object for ``path``: written to a temporary file beside it, then renamed.

    On success the file gets the permissions a plain ``open`` would give it (mkstemp's
    temporary files are private); on an error the temporary file is removed and
    ``path`` is left as it was. ``fsync=True`` also puts the bytes on disk before the
    rename (checkpoints: a power loss then keeps the old file or the whole new one).
    """
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
