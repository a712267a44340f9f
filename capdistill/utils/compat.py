"""Work-arounds for known frictions between mmengine 0.10, torch >= 2.6 and torchvision.

Nothing here runs when ``capdistill`` is imported: the tools (and anyone starting a run
from their own script) call :func:`capdistill.setup_runtime`, which applies them all to
that process. Each patch is idempotent and does nothing where it is not needed.
"""
import os
import re
import sys

import torch

from capdistill.utils.files import atomic_open


def patch_torchvision():
    """Let a CUDA torchvision wheel import beside a CPU torch, without importing it.

    PyPI's torchvision registers fake kernels for ``nms``/``qnms`` whose schemas the
    CPU torch lacks, so ``import torchvision`` fails, and with it open_clip, timm and
    mmengine's Runner. Defining the two schemas first is enough; torchvision's
    compiled ops stay unavailable, and nothing here needs them. Whether they are needed
    is told by loading its compiled ops as its own import would: importing torchvision
    itself costs ~0.8 s of start-up that most runs never use.
    """
    folder = _torchvision_folder()
    if 'torchvision' in sys.modules or folder is None:
        return
    import glob
    for lib_file in glob.glob(os.path.join(folder, '_C.*')):
        try:
            torch.ops.load_library(lib_file)
            return  # its ops load: it imports as it is
        except (OSError, RuntimeError):
            pass
    try:
        torch._C._get_schema('torchvision::nms', '')
        return  # defined already (by an earlier call)
    except RuntimeError:
        pass
    lib = torch.library.Library('torchvision', 'FRAGMENT')
    lib.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    lib.define('qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    patch_torchvision._lib = lib  # the schemas live as long as this object


def _torchvision_folder():
    """The installed torchvision package's folder (found, not imported), or None."""
    import importlib.util
    spec = importlib.util.find_spec('torchvision')
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _torchvision_version():
    """torchvision's ``__version__`` (with its build tag, e.g. ``+cu130``), read from its
    ``version.py`` without importing it; None when it is not installed."""
    import re
    folder = _torchvision_folder()
    if folder is None:
        return None
    try:
        with open(os.path.join(folder, 'version.py'), encoding='utf-8') as f:
            found = re.search(r"^__version__ = ['\"]([^'\"]+)['\"]", f.read(), re.M)
    except OSError:
        return None
    return found.group(1) if found else None


def patch_environment_log():
    """mmengine's environment log imports torchvision for its version: read it from
    torchvision's ``version.py`` instead, so a run that never uses torchvision does not
    load it."""
    import types

    import mmengine.runner.runner as runner_module
    collect_env = runner_module.collect_env
    if getattr(collect_env, '_capdistill_patched', False):
        return

    def collect_env_without_torchvision():
        found = None if 'torchvision' in sys.modules else _torchvision_version()
        if found is None:
            return collect_env()
        stand_in = types.ModuleType('torchvision')
        stand_in.__version__ = found
        sys.modules['torchvision'] = stand_in  # what ``import torchvision`` finds there
        try:
            return collect_env()
        finally:
            if sys.modules.get('torchvision') is stand_in:
                del sys.modules['torchvision']

    collect_env_without_torchvision._capdistill_patched = True
    runner_module.collect_env = collect_env_without_torchvision


def patch_checkpoint_loader():
    """Load one's own full mmengine checkpoints under torch >= 2.6.

    torch now defaults to ``weights_only=True`` and mmengine 0.10 calls it bare, so
    ``resume``/``load_from`` fail on mmengine's own objects in the checkpoint. Full
    checkpoints are trusted files of one's own run; models shared with others go out
    as safetensors (see ``tools/export_student.py``).
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    if getattr(CheckpointLoader, '_capdistill_patched', False):
        return

    @CheckpointLoader.register_scheme(prefixes='', force=True)
    def load_from_local(filename, map_location):
        from capdistill.utils.checkpoint import load_full_checkpoint
        return load_full_checkpoint(filename, map_location)

    CheckpointLoader._capdistill_patched = True


def patch_atomic_local_writes():
    """Write local files (checkpoints, ``last_checkpoint``) to a temporary file and rename.

    A run killed during a save then leaves the previous checkpoint intact instead of a
    truncated one under the final name.
    """
    from mmengine.fileio.backends import LocalBackend, register_backend
    if getattr(LocalBackend, '_capdistill_atomic', False):
        return

    class AtomicLocalBackend(LocalBackend):
        _capdistill_atomic = True

        def put(self, obj, filepath):
            _atomic_write(filepath, obj)

        def put_text(self, obj, filepath, encoding='utf-8'):
            _atomic_write(filepath, obj.encode(encoding))

    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    LocalBackend._capdistill_atomic = True


_LONG_STRING = re.compile(r"'[^'\n]{40,}'|\"[^\"\n]{40,}\"")


def format_width(text, limit=79):
    """The line width to format a config's ``text`` at: ``limit``, or the longest line
    holding a string of 40+ characters (a path), which no line break can shorten."""
    widths = [len(line) for line in text.splitlines() if _LONG_STRING.search(line)]
    return max([limit] + widths)


def patch_config_formatting():
    """Format a config's text with yapf once per distinct text, at a width its paths fit.

    mmengine re-formats the whole config for the log, the dumped config and every
    checkpoint's meta. A line that cannot fit yapf's 79 columns (a long absolute path)
    sends yapf through every way of splitting the statement around it: seconds per
    config (3 s for a config whose data sits under a pytest or NAS path, against 0.09 s
    for the same config with its paths fitting). Widening the limit to the longest such
    line keeps the format of configs whose lines fit and makes the others as fast.
    """
    import functools

    import mmengine.config.config as config_module
    if getattr(config_module.FormatCode, '_capdistill_cached', False):
        return
    format_code = config_module.FormatCode

    @functools.lru_cache(maxsize=64)
    def _format(text, style):
        style = dict(style)
        style['column_limit'] = format_width(text, style.get('column_limit', 79))
        return format_code(text, style_config=style)

    def cached_format(text, style_config=None, **kwargs):
        if kwargs or not isinstance(style_config, dict):
            return format_code(text, style_config=style_config, **kwargs)
        return _format(text, tuple(sorted(style_config.items())))

    cached_format._capdistill_cached = True
    cached_format.cache_info = _format.cache_info
    config_module.FormatCode = cached_format


def _atomic_write(filepath, data):
    with atomic_open(filepath, 'wb', fsync=True) as f:
        f.write(data)


def is_applied():
    """Whether :func:`apply_all` has patched mmengine in this process."""
    from mmengine.fileio.backends import LocalBackend
    from mmengine.runner.checkpoint import CheckpointLoader
    return bool(getattr(CheckpointLoader, '_capdistill_patched', False)
                and getattr(LocalBackend, '_capdistill_atomic', False))


def apply_all():
    """Every patch above, plus ``HF_HUB_OFFLINE=1`` unless the caller set it."""
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    patch_torchvision()
    patch_environment_log()
    patch_checkpoint_loader()
    patch_atomic_local_writes()
    patch_config_formatting()
