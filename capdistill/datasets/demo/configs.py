"""The capdemo configs read ``data/capdemo`` and write ``work_dirs``; copies that read and
write elsewhere, for the demo and the KD table run on another build of the data."""
import os
import os.path as osp

DEFAULT_ROOT = 'data/capdemo'
DEFAULT_WORK_ROOT = 'work_dirs'


def _moved(path, moves):
    for old, new in moves:
        if path == old or path.startswith(old + '/'):
            return new + path[len(old):]
    return path


def config_for_root(config, data_root, out_dir, work_root=None):
    """``config`` reading ``data_root`` instead of data/capdemo: a copy in ``out_dir`` with
    every path under the default root moved (datasets, vocabulary), or ``config`` itself.

    With ``work_root``, paths under ``work_dirs/`` (teacher checkpoints, teacher caches)
    move there too, so models trained on other data are never read as the default ones.
    """
    from mmengine.config import Config
    moves = []
    if osp.normpath(data_root) != DEFAULT_ROOT:
        moves.append((DEFAULT_ROOT, osp.abspath(data_root)))
    if work_root is not None and osp.normpath(work_root) != DEFAULT_WORK_ROOT:
        moves.append((DEFAULT_WORK_ROOT, osp.abspath(work_root)))
    if not moves:
        return config
    cfg = Config.fromfile(config)

    def move(node):
        if isinstance(node, dict):
            return {k: move(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return type(node)(move(v) for v in node)
        return _moved(node, moves) if isinstance(node, str) else node

    moved = Config(move(cfg.to_dict()))
    os.makedirs(out_dir, exist_ok=True)
    path = osp.join(out_dir, osp.basename(config))
    moved.dump(path)
    return path
