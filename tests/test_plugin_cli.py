"""A plugin loss named by ``--cfg-options custom_imports.imports=...``, through tools/train.py."""
import os
import re
import shlex

import pytest
import torch

from conftest import REPO, run_tool, run_tool_here, write_tiny_config

from capdistill.apis import init_captioner

README = os.path.join(REPO, 'projects', 'example_loss', 'README.md')
KD_MODEL = ("dict(type='DistillAlgorithm', student=_student, teacher=_teacher, "
            "teacher_ckpt='{ckpt}', distill_losses=dict(loss_word=dict(type='WordKLLoss', tau=2.0)))")


def readme_options():
    """The ``--cfg-options`` of the README's one-liner, as the shell would split them."""
    blocks = re.findall(r'```bash\n(.*?)```', open(README).read(), re.S)
    line = next(b for b in blocks if 'custom_imports.imports' in b).replace('\\\n', ' ')
    args = shlex.split(line)
    return args[args.index('--cfg-options') + 1:]


@pytest.fixture(scope='module')
def kd_config(tmp_path_factory, tiny_root):
    """A tiny word-KD config whose teacher checkpoint exists (random weights will do)."""
    tmp = tmp_path_factory.mktemp('plugin_cli')
    torch.manual_seed(0)
    teacher = init_captioner(write_tiny_config(tmp / 'teacher.py', tiny_root))
    ckpt = tmp / 'teacher.pth'
    torch.save(dict(state_dict=teacher.state_dict(), meta=dict(epoch=0)), ckpt)
    return write_tiny_config(tmp / 'kd.py', tiny_root, model=KD_MODEL.format(ckpt=ckpt)), tmp


def test_readme_one_liner_trains_with_the_plugin_loss(kd_config):
    cfg, tmp = kd_config
    options = readme_options()
    assert options[0] == "custom_imports.imports=['projects.example_loss.confidence_kd']"
    # PYTHONPATH without the repository: the tool finds projects/ from the working directory
    res = run_tool(['tools/train.py', cfg, '--work-dir', str(tmp / 'work'), '--cfg-options',
                    *options, 'train_cfg.max_epochs=1', 'train_cfg.val_interval=5'],
                   env=dict(PYTHONPATH=''))
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    assert 'distill.loss_word' in log
    dumped = open(tmp / 'work' / 'kd.py').read()  # the config the run really used
    assert "type='ConfidenceWeightedWordKLLoss'" in dumped
    assert os.path.isfile(tmp / 'work' / 'epoch_1.pth')


def test_missing_plugin_module_is_one_line(kd_config):
    cfg, tmp = kd_config
    options = [o.replace('confidence_kd', 'no_such_loss') for o in readme_options()]
    res = run_tool_here(['tools/train.py', cfg, '--work-dir', str(tmp / 'missing'),
                         '--cfg-options', *options])
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: custom_imports: cannot import "
                           "'projects.example_loss.no_such_loss'")
    assert 'Traceback' not in res.stderr
