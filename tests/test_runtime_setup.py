"""``import capdistill`` leaves mmengine alone; ``setup_runtime()`` patches this process only."""
import json
import os
import subprocess
import sys

import torch

from conftest import REPO, run_tool

# Prints what capdistill could patch in mmengine, before and after importing every
# capdistill package, and after setup_runtime(). Runs in a fresh interpreter: this
# test process has the patches applied already (conftest).
PROBE = r'''
import json, os, sys
from mmengine.fileio.backends import registry_utils
from mmengine.runner.checkpoint import CheckpointLoader
import mmengine.config.config as config_module


def state():
    return dict(loader=repr(CheckpointLoader._schemes['']),
                formatter=repr(config_module.FormatCode),
                backend=repr(registry_utils.prefix_to_backends.get('')),
                local=repr(registry_utils.backends['local']),
                env=sorted(os.environ.items()))


before = state()
import capdistill, capdistill.registry, capdistill.models, capdistill.datasets  # noqa
import capdistill.evaluation, capdistill.engine, capdistill.apis, capdistill.utils  # noqa
from capdistill.registry import MODELS, LOSSES
LOSSES.build(dict(type='WordKLLoss'))  # lazy registry imports run too
imported = state()
capdistill.setup_runtime()
patched = state()
json.dump(dict(before=before, imported=imported, patched=patched), sys.stdout)
'''


def _states():
    env = {k: v for k, v in os.environ.items() if k != 'HF_HUB_OFFLINE'}
    res = subprocess.run([sys.executable, '-c', PROBE], cwd=REPO, capture_output=True, text=True,
                         env=dict(env, PYTHONPATH=REPO, OMP_NUM_THREADS='1'), timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_import_patches_nothing_and_setup_runtime_does():
    states = _states()
    before, imported, patched = states['before'], states['imported'], states['patched']
    assert imported == before, 'importing capdistill changed mmengine or the environment'
    # the same probe sees each patch once setup_runtime() runs, so it can tell
    assert patched['loader'] != before['loader']
    assert patched['backend'] != before['backend'] and 'Atomic' in patched['backend']
    assert patched['local'] != before['local']
    assert patched['formatter'] != before['formatter']
    assert ['HF_HUB_OFFLINE', '1'] in patched['env']
    assert ['HF_HUB_OFFLINE', '1'] not in imported['env']


def test_setup_runtime_is_what_loads_full_checkpoints(tmp_path):
    """torch >= 2.6 refuses mmengine's own objects in a full checkpoint without the patch."""
    from mmengine.logging import HistoryBuffer
    ckpt = tmp_path / 'full.pth'
    torch.save(dict(state_dict={'w': torch.ones(2)}, message_hub=HistoryBuffer()), ckpt)
    code = ('import sys, capdistill\n'
            'from mmengine.runner.checkpoint import CheckpointLoader\n'
            'if sys.argv[2] == "setup": capdistill.setup_runtime()\n'
            'print(CheckpointLoader.load_checkpoint(sys.argv[1], "cpu")["state_dict"]["w"].sum())')
    plain = run_tool([sys.executable, '-c', code, str(ckpt), 'plain'])
    assert plain.returncode != 0 and 'weights_only' in plain.stderr
    setup = run_tool([sys.executable, '-c', code, str(ckpt), 'setup'])
    assert setup.returncode == 0, setup.stderr[-2000:]
    assert 'tensor(2.)' in setup.stdout


def test_config_text_is_formatted_once_and_unchanged():
    """The remembered yapf formatting gives mmengine's own text for a config whose lines fit
    79 columns, computed once per text; one with long paths is laid out at the width of its
    longest path line and reads back as the same config."""
    import mmengine.config.config as config_module
    from mmengine.config import Config
    from yapf.yapflib.yapf_api import FormatCode

    from capdistill.utils import compat
    short = Config(dict(model=dict(type='Captioner', path='data/x.npy', sizes=list(range(40))),
                        train_cfg=dict(max_epochs=3)))
    path = '/a/long/' * 20 + 'x.npy'
    long = Config(dict(model=dict(type='Captioner', path=path, other=path + 'y',
                                  head=dict(depth=1, embed_dim=8)),
                       train_cfg=dict(max_epochs=3)))
    patched = config_module.FormatCode  # conftest ran setup_runtime()
    assert getattr(patched, '_capdistill_cached', False)
    config_module.FormatCode = FormatCode  # mmengine as shipped
    try:
        plain_short, plain_long = short.pretty_text, long.pretty_text
    finally:
        config_module.FormatCode = patched
    first = short.pretty_text
    misses = patched.cache_info().misses
    again = short.pretty_text
    assert first == plain_short and again == plain_short
    assert patched.cache_info().misses == misses  # the second text came from memory
    text = long.pretty_text
    assert text != plain_long  # laid out wider than 79 columns
    assert Config.fromstring(text, '.py').to_dict() == long.to_dict()
    width = max(len(line) for line in text.splitlines())
    assert width == len(f"    other='{path}y',") and "path='" + path + "'" in text
    assert 'head=dict(depth=1, embed_dim=8)' in text  # short parts still joined as yapf does
    compat.patch_config_formatting()  # idempotent: no second layer
    assert config_module.FormatCode is patched


def test_runs_load_torchvision_only_when_something_uses_it():
    """setup_runtime and mmengine's environment log leave torchvision unimported (~0.8 s of
    every tool's start-up); it still imports, with open_clip and timm, when used."""
    code = (
        'import sys, capdistill\n'
        'capdistill.setup_runtime()\n'
        'import mmengine.runner.runner as runner\n'
        'env = runner.collect_env()\n'
        "assert 'torchvision' not in sys.modules\n"
        'import torchvision, open_clip, timm\n'
        "assert env['TorchVision'] == torchvision.__version__, env['TorchVision']\n"
        "print('ok', torchvision.__version__)\n")
    res = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, PYTHONPATH=REPO))
    assert res.returncode == 0 and res.stdout.startswith('ok '), res.stderr[-2000:]
