import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import capdistill

# the tests run models the way the tools do: with the compatibility patches applied
capdistill.setup_runtime()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def on_ci():
    """True where the environment says it is CI (``CI=true``, as GitHub/GitLab set it)."""
    return os.environ.get('CI', '').strip().lower() in ('1', 'true', 'yes')


def pytest_runtest_setup(item):
    """``java`` tests skip without Java, but fail under CI, where a skip would hide a
    missing runtime; ``gpu`` tests skip without CUDA."""
    if item.get_closest_marker('java') is not None and shutil.which('java') is None:
        message = ('needs a Java runtime and java is not on PATH (install one, e.g. '
                   'apt-get install default-jre-headless)')
        if on_ci():
            pytest.fail(f'{message}; CI=true, so this is a failure, not a skip', pytrace=False)
        pytest.skip(message)
    if item.get_closest_marker('gpu') is not None:
        import torch
        if not torch.cuda.is_available():
            pytest.skip('needs a CUDA GPU (torch.cuda.is_available() is False)')
COLOURS = ['red', 'green', 'blue', 'yellow']
ACTIONS = ['moves left', 'moves right', 'spins', 'bounces']


def make_tiny_dataset(root, num_videos=12, dims=(('grid8', 24), ('grid16', 48)), frames=6,
                      seed=0):
    """A small dataset in the reference layout: features carry the caption's words."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, 'language'), exist_ok=True)
    os.makedirs(os.path.join(root, 'splits'), exist_ok=True)
    sentences, ids = [], []
    for i in range(num_videos):
        vid = f'vid{i:03d}'
        ids.append(vid)
        c, a = COLOURS[i % 4], ACTIONS[(i // 4) % 4]
        for template in ('a {c} ball {a}', 'the {c} object {a}', 'a {c} shape {a}'):
            sentences.append(dict(video_id=vid, caption=template.format(c=c, a=a)))
        for name, dim in dims:
            folder = os.path.join(root, 'visual', name, 'frame_feature')
            os.makedirs(folder, exist_ok=True)
            feats = rng.normal(size=(frames, dim)).astype(np.float32)
            feats[:, i % 4] += 3.0
            feats[:, 4 + (i // 4) % 4] += 3.0
            np.save(os.path.join(folder, f'{vid}.npy'), feats)
    with open(os.path.join(root, 'language', 'tiny_caption.json'), 'w') as f:
        json.dump(dict(sentences=sentences), f)
    n_train = num_videos * 2 // 3
    splits = dict(train=ids[:n_train], valid=ids[n_train:], test=ids[n_train:])
    for split, split_ids in splits.items():
        with open(os.path.join(root, 'splits', f'tiny_{split}_list.json'), 'w') as f:
            json.dump(split_ids, f)
    return root


TINY_CONFIG = '''
_base_ = ['{repo}/configs/_base_/default_runtime.py', '{repo}/configs/_base_/schedules/adam_20e.py']
data_root = '{root}'
tokenizer = dict(type='WordTokenizer', vocab_file='{root}/language/vocab.json',
                 build_from=dict(ann_file='{root}/language/tiny_caption.json',
                                 split_file='{root}/splits/tiny_train_list.json'))
pipeline = [dict(type='LoadFrameFeatures', num_frames=4), dict(type='PackCaptionInputs')]
_ds = dict(type='CaptionDataset', data_root=data_root, ann_file='language/tiny_caption.json',
           feature_dirs=dict(feats='visual/grid8/frame_feature',
                             teacher_feats='visual/grid16/frame_feature'),
           tokenizer=tokenizer, max_len=6, pipeline=pipeline)
train_dataloader = dict(batch_size=4, num_workers=0,
                        sampler=dict(type='DefaultSampler', shuffle=True),
                        dataset=dict(_ds, split_file='splits/tiny_train_list.json'))
val_dataloader = dict(batch_size=3, num_workers=0,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset=dict(_ds, split_file='splits/tiny_valid_list.json', test_mode=True))
test_dataloader = dict(val_dataloader, dataset=dict(_ds, split_file='splits/tiny_test_list.json',
                                                    test_mode=True))
val_evaluator = dict(type='CaptionMetric', scorers=['Bleu', 'ROUGE_L', 'CIDEr'])
test_evaluator = val_evaluator
_student = dict(type='Captioner', feature_key='feats',
                visual_encoder=dict(type='FeatureProjector', in_dim=24, embed_dim=32),
                encoder=dict(type='IdentityEncoder'),
                head=dict(type='PrefixLMHead', embed_dim=32, depth=1, num_heads=2),
                tokenizer=tokenizer, max_len=6)
_teacher = dict(type='Captioner', feature_key='teacher_feats',
                visual_encoder=dict(type='FeatureProjector', in_dim=48, embed_dim=32),
                encoder=dict(type='TransformerEncoder', embed_dim=32, depth=1, num_heads=2),
                head=dict(type='PrefixLMHead', embed_dim=32, depth=1, num_heads=2),
                tokenizer=tokenizer, max_len=6)
model = {model}
optim_wrapper = dict(optimizer=dict(lr=1e-3))
train_cfg = dict(max_epochs=2, val_interval=1)
default_hooks = dict(logger=dict(interval=1))
'''


def write_tiny_config(path, root, model='_teacher', **extra):
    text = TINY_CONFIG.format(repo=REPO, root=root, model=model)
    text += ''.join(f'{k} = {v!r}\n' for k, v in extra.items())
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


@pytest.fixture(scope='session')
def tiny_root(tmp_path_factory):
    return make_tiny_dataset(str(tmp_path_factory.mktemp('tiny')))


def free_port():
    """A TCP port nobody listens on now (for torchrun's rendezvous in parallel test runs)."""
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_tool(args, cwd=REPO, timeout=300, env=None):
    """Run a script under tools/ (or any command) as a subprocess of this interpreter."""
    # one thread per process: tiny models gain nothing from more, and lose a lot on busy cores
    full_env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1')
    full_env.update(env or {})  # env may override the defaults above
    cmd = [sys.executable] + list(args) if args[0].endswith('.py') else list(args)
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def run_tool_here(args, cwd=REPO):
    """Run a script under tools/ in this process, as ``python script args`` would, for
    tests of its bad-input paths (each tool keeps a real subprocess test too): a
    ``subprocess.CompletedProcess`` with the exit code and what it printed.

    Saves the ~5 s of a new interpreter's imports per call; the torch thread count, the
    working directory and ``sys.argv`` are restored afterwards.
    """
    import contextlib
    import io
    import runpy
    import traceback

    import torch
    from mmengine.logging import MessageHub, MMLogger
    from mmengine.registry import DefaultScope
    from mmengine.visualization import Visualizer
    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv, os.getcwd(), torch.get_num_threads()
    # a Runner made here registers its logger, scope, message hub and visualizer by the
    # run's name (config name + second): forget them, as the end of a process would
    managed = (MMLogger, MessageHub, DefaultScope, Visualizer)
    before = {cls: set(cls._instance_dict) for cls in managed}
    sys.argv = [str(a) for a in args]
    code = 0
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(os.path.join(cwd, args[0]), run_name='__main__')
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (
                    0 if stop.code is None else 1)
                if not isinstance(stop.code, (int, type(None))):
                    print(stop.code, file=sys.stderr)
            except Exception:  # what the interpreter would print and exit with
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = saved[0]
        os.chdir(saved[1])
        torch.set_num_threads(saved[2])
        for cls in managed:
            for name in set(cls._instance_dict) - before[cls]:
                instance = cls._instance_dict.pop(name)
                for handler in getattr(instance, 'handlers', [])[:]:
                    handler.close()
                    instance.removeHandler(handler)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())
