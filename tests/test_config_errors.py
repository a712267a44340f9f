"""Config mistakes, wrong files and Ctrl-C end in one line, before the Runner starts."""
import glob
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config

from capdistill.engine.config_check import ConfigError, check_config, check_options
from capdistill.engine.setup import read_config
from conftest import REPO, run_tool, run_tool_here, write_tiny_config

CAPDEMO_TEACHER = os.path.join(REPO, 'configs/capdemo/baseline_teacher_grid16_1xb64-8e_capdemo.py')


def _checked(path, **options):
    read_config(path, options)  # what tools/train.py and the analysis tools read


@pytest.mark.parametrize('option,expected', [
    ({'train_cfg.max_epoch': 1}, "did you mean 'train_cfg.max_epochs'"),
    ({'train_dataloadr.batch_size': 8}, "did you mean 'train_dataloader'"),
    ({'model.decode.beam_sise': 5}, "did you mean 'model.decode.beam_size'"),
    ({'train_cfg.max_epochs': 'two'}, 'must be an integer'),
    ({'train_dataloader.num_workers': 'many'}, 'must be an integer'),
    ({'model.head.depht': 2}, "did you mean 'model.head.depth'"),
    ({'default_hooks.checkpoint.max_keep_ckpt': 1}, "'default_hooks.checkpoint.max_keep_ckpts'"),
    # decoding values no search can run with stop the build, not the first test batch
    ({'model.decode.beam_size': 0}, 'model.decode.beam_size=0: it must be an integer >= 1'),
    ({'model.decode.strategy': 'sample'}, "model.decode.strategy='sample': it must be 'greedy'"),
    ({'model.decode.min_len': -1}, 'model.decode.min_len=-1: it must be an integer >= 0'),
    ({'model.decode.length_penalty': float('nan')}, 'length_penalty=nan: it must be a finite'),
    ({'model.decode.shortlist': ['groups', 'int4']}, 'it must be None, True, False or a list of'),
    # values mmengine or torch would take to a traceback, or to a run that trains nothing
    ({'train_cfg.max_epochs': 0}, "'train_cfg.max_epochs' is 0; it must be an integer >= 1"),
    ({'train_cfg.val_interval': 0}, "'train_cfg.val_interval' is 0; it must be an integer >= 1"),
    ({'train_dataloader.batch_size': 0}, "'train_dataloader.batch_size' is 0; it must be an"),
    ({'test_dataloader.num_workers': -1}, "is -1; it must be an integer >= 0 or 'auto'"),
    ({'optim_wrapper.optimizer.lr': -0.1}, "'optim_wrapper.optimizer.lr' is -0.1; it must be a"),
])
def test_misspelled_or_mistyped_option_is_named(option, expected):
    with pytest.raises(ConfigError, match=expected.replace('.', r'\.')):
        _checked(CAPDEMO_TEACHER, **option)


def test_valid_options_pass():
    _checked(CAPDEMO_TEACHER, **{'model.decode.beam_size': 5, 'model.decode.strategy': 'beam',
                                 'train_cfg.max_epochs': 3, 'train_dataloader.num_workers': 0,
                                 'val_dataloader.num_workers': 'auto',
                                 'optim_wrapper.optimizer.lr': 0})


def test_every_shipped_config_passes_the_check():
    configs = [p for p in glob.glob(os.path.join(REPO, 'configs', '**', '*.py'), recursive=True)
               if '_base_' not in p]
    assert len(configs) > 10
    for path in configs:
        _checked(path)


def test_misspelled_key_in_a_config_file(tmp_path, tiny_root):
    cfg = write_tiny_config(tmp_path / 'cfg.py', tiny_root)
    with open(cfg, 'a') as f:
        f.write("train_dataloadr = dict(batch_size=8)\n")
    with pytest.raises(ConfigError, match="did you mean 'train_dataloader'"):
        _checked(cfg)


def _last_line(res):
    assert 'Traceback' not in res.stderr, res.stderr[-2000:]
    return res.stderr.strip().splitlines()[-1]


def test_train_tool_stops_on_a_misspelled_option(tmp_path, tiny_root):
    cfg = write_tiny_config(tmp_path / 'cfg.py', tiny_root)
    res = run_tool_here(['tools/train.py', cfg, '--work-dir', str(tmp_path / 'work'),
                         '--cfg-options', 'train_cfg.max_epoch=1'])
    assert res.returncode == 1
    assert _last_line(res) == ("error: unknown config key 'train_cfg.max_epoch' "
                               "(ResumableEpochTrainLoop has no such option); did you mean "
                               "'train_cfg.max_epochs'?")
    assert not (tmp_path / 'work').exists()  # stopped before the Runner made its work dir


def test_test_tool_refuses_a_text_file_named_pth(tmp_path, tiny_root):
    cfg = write_tiny_config(tmp_path / 'cfg.py', tiny_root)
    text = tmp_path / 'model.pth'
    text.write_text('see https://example.org for the weights\n')
    res = run_tool_here(['tools/test.py', cfg, str(text), '--work-dir', str(tmp_path / 'w')])
    assert res.returncode == 1
    assert _last_line(res) == (f'error: {text} is not a PyTorch checkpoint (neither a '
                               'torch.save archive nor a pickle); give the .pth file '
                               'tools/train.py wrote')


def test_truncated_safetensors_is_one_line(tmp_path, capsys):
    from safetensors.torch import save_file

    from capdistill.utils.cli import check_checkpoint_file, friendly_main
    whole = tmp_path / 'whole.safetensors'
    save_file({'w': torch.ones(256)}, str(whole))
    check_checkpoint_file(str(whole))
    cut = tmp_path / 'cut.safetensors'
    cut.write_bytes(whole.read_bytes()[:300])
    with pytest.raises(SystemExit) as exit_:
        friendly_main(check_checkpoint_file)(str(cut))
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith(f'error: {cut} is not a complete '
                                                    'safetensors file')


def test_ctrl_c_is_one_line_and_the_log_keeps_the_traceback(tmp_path, tiny_root):
    cfg = write_tiny_config(tmp_path / 'cfg.py', tiny_root)
    work = tmp_path / 'work'
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1')
    proc = subprocess.Popen([sys.executable, 'tools/train.py', cfg, '--work-dir', str(work),
                             '--cfg-options', 'train_cfg.max_epochs=100000'], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # as from a terminal: a pytest-xdist worker ignores SIGINT, and an
                            # ignored signal stays ignored in its children
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120

    def training():
        return any('loss' in p.read_text() for p in work.glob('*/vis_data/scalars.json'))

    while time.time() < deadline and not training():
        time.sleep(0.2)
    assert training(), 'training never started'
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert 'Traceback' not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith('error: interrupted (Ctrl-C); log: ') and '--resume' in last
    log = next(work.glob('*/*.log')).read_text()
    assert 'Traceback' in log and 'KeyboardInterrupt' in log


def test_cpu_defaults_follow_the_available_cores(monkeypatch):
    from capdistill.engine import setup
    threads = torch.get_num_threads()
    try:
        for cores, procs, expect in ((2, 1, (1, 0)), (16, 1, (8, 4)), (16, 2, (4, 3))):
            monkeypatch.setattr(setup, 'available_cores', lambda c=cores: c)
            monkeypatch.setenv('WORLD_SIZE', str(procs))
            monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
            cfg = Config.fromfile(os.path.join(
                REPO, 'configs/sftcap/sftcap_shared_clip-b32_1xb64-20e_msrvtt.py'))
            setup.apply_cpu_defaults(cfg)
            loader = cfg.train_dataloader
            assert (cfg.cpu_threads, loader.num_workers) == expect
            assert torch.get_num_threads() == expect[0]
            assert loader.persistent_workers == (expect[1] > 0)
        monkeypatch.setenv('OMP_NUM_THREADS', '3')  # an explicit setting wins
        cfg = Config.fromfile(CAPDEMO_TEACHER)
        assert setup.apply_cpu_defaults(cfg).cpu_threads == 3
        cfg.cpu_threads = 'many'
        with pytest.raises(ConfigError, match="cpu_threads must be 'auto'"):
            setup.apply_cpu_defaults(cfg)
    finally:
        torch.set_num_threads(threads)


def test_caption_video_threads_follow_the_cores(monkeypatch, capsys, tmp_path):
    """caption_video picks its torch threads as training does; --threads overrides."""
    import importlib.util

    from capdistill.engine import setup
    spec = importlib.util.spec_from_file_location(
        'caption_video_tool', os.path.join(REPO, 'tools', 'caption_video.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    threads = torch.get_num_threads()
    missing = str(tmp_path / 'missing.py')  # the tool stops after choosing its threads
    try:
        monkeypatch.setattr(setup, 'available_cores', lambda: 8)
        monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
        for argv, expect in (([], 4), (['--threads', '3'], 3)):
            with pytest.raises(SystemExit):
                tool.main([missing, 'x.pth', 'clip.mp4'] + argv)
            assert torch.get_num_threads() == expect
        with pytest.raises(SystemExit):
            tool.main([missing, 'x.pth', 'clip.mp4', '--threads', '0'])
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
            "error: argument --threads: must be an integer >= 1, got '0'")
    finally:
        torch.set_num_threads(threads)


def test_progress_lines_with_eta(capsys, monkeypatch):
    from capdistill.datasets.demo import build
    clock = iter(range(0, 100, 3))  # every step takes 3 s
    monkeypatch.setattr(build.time, 'perf_counter', lambda: next(clock))
    progress = build._Progress('capdemo: rendering videos', 10)
    for _ in range(10):
        progress.step()
    progress.done()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'capdemo: rendering videos: 2/10, 6 s, ETA 24 s'
    assert lines[-1].startswith('capdemo: rendering videos: 10/10 in ')
    assert 3 <= len(lines) <= 6


@pytest.mark.parametrize('tool,args,expected', [
    ('benchmark.py', ['configs/nope.py'], 'Config file not found: configs/nope.py'),
    ('get_flops.py', [CAPDEMO_TEACHER, '--cfg-options', 'model.head.depth=two'],
     "'model.head.depth' must be an integer, got 'two'"),
    ('benchmark_loader.py', [CAPDEMO_TEACHER, '--cfg-options', 'model.head.dpeth=2'],
     "did you mean 'model.head.depth'"),
    ('browse_dataset.py', ['TINY', '--split', 'train', '--cfg-options',
                           'train_dataloader.dataset.data_root=/nonexistent'],
     'Annotation file not found: /nonexistent/language/tiny_caption.json'),
    ('benchmark_decoding.py', [CAPDEMO_TEACHER, '--cfg-options', 'train_cfg.max_epoch=1'],
     "did you mean 'train_cfg.max_epochs'"),
])
def test_analysis_tools_read_configs_as_train_does(tool, args, expected, tmp_path, tiny_root):
    """A wrong config path, option or data root stops an analysis tool in one line."""
    tiny = write_tiny_config(tmp_path / 'cfg.py', tiny_root)  # data this test made itself
    # in this process: each tool runs as a real process in its own tests
    res = run_tool_here([f'tools/analysis/{tool}',
                         *[tiny if a == 'TINY' else a for a in args]])
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
    assert 'Traceback' not in res.stderr, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and expected in last, res.stderr[-2000:]
