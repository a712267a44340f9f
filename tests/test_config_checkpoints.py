"""Every checkpoint a shipped config reads is one that a shipped config's run writes.

A config that names ``work_dirs/<run>/<file>`` (a teacher, a student to fine-tune,
``load_from``) is checked against the files training ``configs/**/<run>.py`` leaves in
its work dir (mmengine's ``CheckpointHook`` settings of that config: interval, kept
checkpoints, best checkpoint), laid out in a temporary folder and found through the
same :func:`resolve_checkpoint` the run uses.
"""
import glob
import os
import re

import pytest
from mmengine.config import Config

from capdistill.utils.checkpoint import resolve_checkpoint
from conftest import REPO

SHIPPED = {os.path.splitext(os.path.basename(p))[0]: p
           for p in glob.glob(os.path.join(REPO, 'configs', '**', '*.py'), recursive=True)
           if '_base_' not in p and not os.path.basename(p).startswith('_')}
# tools/train.py writes work_dirs/<config>/; run_kd_table.py work_dirs/kd_table/<config>/seedN/
RUN_DIR = re.compile(r'work_dirs/(?:kd_table/)?(?P<run>[^/]+)(?:/seed\d+)?/[^/]+')


def _named_checkpoints(node, key=''):
    """``(config key, path)`` of every checkpoint entry in a config tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            if not key and k.startswith('_'):
                continue  # a config's helper variable: its use is checked where it lands
            yield from _named_checkpoints(v, f'{key}.{k}' if key else k)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _named_checkpoints(v, f'{key}.{i}')
    elif isinstance(node, str) and re.search(r'(^|\.)(load_from|\w*_?ckpt)$', key):
        yield key, node


def _files_the_run_leaves(cfg):
    """Checkpoint file names in the work dir of a finished run of ``cfg``."""
    hook = cfg.default_hooks.checkpoint
    last = cfg.train_cfg.max_epochs
    saved = [e for e in range(1, last + 1) if e % hook.interval == 0 or e == last]
    keep = hook.get('max_keep_ckpts', -1)
    names = [f'epoch_{e}.pth' for e in (saved[-keep:] if keep and keep > 0 else saved)]
    if hook.get('save_best'):  # mmengine's name for it (tests/test_tools.py reads one)
        names.append(f'best_{hook.save_best}_epoch_{last}.pth')
    return names


CASES = sorted({(name, key, path) for name, p in SHIPPED.items()
                for key, path in _named_checkpoints(Config.fromfile(p).to_dict())})


def test_the_shipped_configs_name_checkpoints():
    keys = {key for _, key, _ in CASES}
    assert {'model.teacher_ckpt', 'model.student_ckpt'} <= keys, keys
    assert len(CASES) >= 20


@pytest.mark.parametrize('name,key,path', CASES, ids=[f'{n}:{k}' for n, k, _ in CASES])
def test_named_checkpoint_is_written_by_its_run(name, key, path, tmp_path):
    where = RUN_DIR.fullmatch(path)
    assert where, f'{name}: {key}={path!r} is not a work dir of a shipped config'
    run = where['run']
    assert run in SHIPPED, f'{name}: {key}={path!r} names {run!r}, no config under configs/'
    folder = tmp_path / os.path.dirname(path)
    folder.mkdir(parents=True)
    for file in _files_the_run_leaves(Config.fromfile(SHIPPED[run])):
        (folder / file).write_bytes(b'')
    found = resolve_checkpoint(str(tmp_path / path), key=key)  # raises: a file it never writes
    assert os.path.dirname(found) == str(folder)


def test_a_checkpoint_name_the_run_never_writes_is_caught(tmp_path):
    """The check above fails on a best checkpoint named without its epoch (as mmengine never
    names one)."""
    run = 'sftcap_teacher_clip-l14_1xb64-20e_msrvtt-official'
    folder = tmp_path / 'work_dirs' / run
    folder.mkdir(parents=True)
    for file in _files_the_run_leaves(Config.fromfile(SHIPPED[run])):
        (folder / file).write_bytes(b'')
    assert resolve_checkpoint(str(folder / 'best')).endswith('best_CIDEr_epoch_20.pth')
    with pytest.raises(FileNotFoundError, match='best_CIDEr.pth'):
        resolve_checkpoint(str(folder / 'best_CIDEr.pth'))
