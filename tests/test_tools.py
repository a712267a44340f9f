"""The command-line tools, run as real subprocesses on a tiny dataset."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import (REPO, free_port, make_tiny_dataset, run_tool, run_tool_here,
                      write_tiny_config)

CAPDEMO_STUDENT = os.path.join(REPO, 'configs/kd/baseline_student_grid8_1xb64-6e_capdemo.py')

KD_MODEL = ("dict(type='DistillAlgorithm', student=_student, teacher=_teacher, "
            "teacher_ckpt='{ckpt}', distill_losses=dict(loss_word=dict(type='WordKLLoss', tau=2.0)))")


@pytest.fixture(scope='module')
def trained_teacher(tmp_path_factory, tiny_root):
    """A one-epoch teacher run through tools/train.py, shared by the tests below."""
    work = tmp_path_factory.mktemp('teacher')
    cfg = write_tiny_config(work / 'teacher.py', tiny_root)
    res = run_tool(['tools/train.py', cfg, '--work-dir', str(work),
                    '--cfg-options', 'train_cfg.max_epochs=1'])
    assert res.returncode == 0, res.stderr[-3000:]
    return cfg, work


def test_train_writes_checkpoint_and_metrics(trained_teacher):
    cfg, work = trained_teacher
    ckpt = torch.load(work / 'epoch_1.pth', map_location='cpu', weights_only=False)
    assert ckpt['meta']['epoch'] == 1
    assert any(k.startswith('head.') for k in ckpt['state_dict'])
    logs = list(work.glob('*/vis_data/scalars.json'))
    assert logs, 'no scalars.json written'
    records = [json.loads(line) for line in open(logs[0])]
    assert any('CIDEr' in r for r in records) and any('loss' in r for r in records)


def test_test_tool_writes_predictions(trained_teacher, tmp_path):
    cfg, work = trained_teacher
    out = tmp_path / 'preds.json'
    # a run's checkpoint named as configs name a teacher's: <work dir>/best
    res = run_tool(['tools/test.py', cfg, str(work / 'best'), '--work-dir',
                    str(tmp_path), '--out', str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.load(open(out))
    assert sorted(result['predictions']) == [f'vid{i:03d}' for i in range(8, 12)]
    assert set(result['aggregate']) == {'Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'ROUGE_L', 'CIDEr'}
    log = res.stdout + res.stderr  # the scoring step announces itself and its time
    assert 'Scoring 4 videos (' in log and 'Scored 4 videos in ' in log


# Runs before the resume test: a resumed copy of this work dir replaces the best checkpoint
# its meta records, by absolute path, i.e. the one in the original dir (mmengine).
def test_checkpoint_contents(trained_teacher):
    """Epoch checkpoints hold what resume needs; the best one holds the weights only."""
    _, work = trained_teacher
    epoch = torch.load(work / 'epoch_1.pth', map_location='cpu', weights_only=False)
    assert set(epoch) == {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers'}
    best_path = next(work.glob('best_CIDEr_epoch_*.pth'))
    best = torch.load(best_path, map_location='cpu', weights_only=False)
    assert 'optimizer' not in best and 'param_schedulers' not in best
    weights = sum(v.numel() for v in best['state_dict'].values())
    adam = sum(t.numel() for s in epoch['optimizer']['state'].values()
               for t in s.values() if torch.is_tensor(t) and t.dim() > 0)
    assert adam <= 2 * weights  # two moments per trainable weight, nothing for frozen ones


def test_resume_continues_at_next_epoch(trained_teacher, tmp_path):
    cfg, work = trained_teacher
    resumed = tmp_path / 'resumed'
    shutil.copytree(work, resumed)
    res = run_tool(['tools/train.py', cfg, '--work-dir', str(resumed), '--resume',
                    '--cfg-options', 'train_cfg.max_epochs=2'])
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = torch.load(resumed / 'epoch_2.pth', map_location='cpu', weights_only=False)
    # 8 training videos x 3 captions / batch 4 = 6 iterations per epoch
    assert ckpt['meta']['epoch'] == 2 and ckpt['meta']['iter'] == 12
    assert 'Epoch(train) [2][1/6]' in res.stdout + res.stderr
    assert 'Epoch(train) [1][' not in res.stdout + res.stderr


def test_resume_under_a_changed_config_stops_in_one_line(trained_teacher, tmp_path):
    """Resuming loads non-strictly in mmengine: a deeper head would start half loaded."""
    cfg, work = trained_teacher
    resumed = tmp_path / 'resumed'
    shutil.copytree(work, resumed)
    res = run_tool(['tools/train.py', cfg, '--work-dir', str(resumed), '--resume',
                    '--cfg-options', 'train_cfg.max_epochs=2', 'model.head.depth=2'])
    assert res.returncode == 1, res.stdout[-2000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith('error: The latest checkpoint in ') and 'Traceback' not in res.stderr
    assert 'does not match the model config: ' in last and 'missing (e.g. head.blocks.1.' in last
    assert not (resumed / 'epoch_2.pth').exists()


# The frozen teacher (weights held in memory before/after a distillation run, on 2 processes)
# is tested in test_distill_runs.py.


def test_dist_train_two_processes_on_cpu(tiny_root, tmp_path):
    cfg = write_tiny_config(tmp_path / 'teacher.py', tiny_root)
    env = dict(PYTHON=sys.executable, PORT='29731')
    res = run_tool(['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', str(tmp_path),
                    '--cfg-options', 'train_cfg.max_epochs=1',
                    'default_hooks.mid_epoch_checkpoint.interval=2'], env=env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    log = res.stdout + res.stderr
    assert 'Distributed training: True' in log
    assert 'Processes: 2' in log and 'GPU number' not in log  # CPU processes, not GPUs
    # 24 training captions / (2 processes x batch 4) = 3 iterations per process
    assert 'Epoch(train) [1][3/3]' in log
    assert (tmp_path / 'epoch_1.pth').is_file()
    # the checkpoint after iteration 2 held both processes' random states; the epoch's
    # own checkpoint replaced it
    from capdistill.engine.loops import MID_EPOCH_KEY
    hub = torch.load(tmp_path / 'epoch_1.pth', weights_only=False)['message_hub']
    record = hub['runtime_info'][MID_EPOCH_KEY]
    assert record['iter'] == 2 and record['world_size'] == 2 and len(record['rng']) == 2
    assert not list(tmp_path.glob('midepoch_iter_*.pth'))


def test_failed_distributed_run_ends_in_one_line(tmp_path):
    """The launcher of dist_run.sh: the failing rank's message, then one line naming the
    ranks and how each ended, not torchrun's traceback and failure table."""
    script = tmp_path / 'job.py'
    script.write_text(
        'import os, sys, time\n'
        'if os.environ["RANK"] == "1":\n'
        '    sys.exit("error: rank 1 cannot go on")\n'
        'time.sleep(60)  # rank 0 is stopped by the launcher\n')
    res = subprocess.run(
        [sys.executable, '-m', 'capdistill.utils.launch', '--nproc_per_node=2',
         f'--master_port={free_port()}', str(script)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert 'error: rank 1 cannot go on' in lines
    assert lines[-1] == ('error: job.py failed in rank 1 (exit code 1), then rank 0 (killed by '
                         "SIGTERM); each rank's own message is above."), res.stderr
    assert 'Traceback' not in res.stderr and 'ChildFailedError' not in res.stderr


@pytest.mark.parametrize('case', ['config', 'teacher', 'feature', 'type'])
def test_bad_input_gives_one_clear_line(case, tmp_path, trained_teacher):
    root = make_tiny_dataset(str(tmp_path / 'data'), num_videos=6)
    model = '_teacher'
    if case == 'teacher':
        model = KD_MODEL.format(ckpt=tmp_path / 'nowhere' / 'teacher.pth')
    if case == 'feature':  # a file of the feature set the teacher reads
        os.remove(os.path.join(root, 'visual', 'grid16', 'frame_feature', 'vid001.npy'))
    if case == 'type':
        model = "dict(_teacher, encoder=dict(type='TransformerEncodr', embed_dim=32))"
    cfg = write_tiny_config(tmp_path / 'cfg.py', root, model=model)
    if case == 'config':
        cfg = str(tmp_path / 'missing.py')
    # one case as a real process, the others in this one (the same script, as __main__)
    run = run_tool if case == 'config' else run_tool_here
    res = run(['tools/train.py', cfg, '--work-dir', str(tmp_path / 'work')])
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and 'Traceback' not in res.stderr
    expected = {'config': 'missing.py', 'teacher': 'Teacher checkpoint not found',
                'feature': 'vid001', 'type': 'Did you mean: TransformerEncoder'}[case]
    assert expected in last


def test_test_tool_refuses_a_checkpoint_of_another_config(trained_teacher, tiny_root, tmp_path):
    """The Runner loads ``load_from`` non-strictly: without the check, the student config
    would be scored with the teacher's checkpoint half loaded and exit 0."""
    _, work = trained_teacher
    student = write_tiny_config(tmp_path / 'student.py', tiny_root, model='_student')
    res = run_tool(['tools/test.py', student, str(work / 'epoch_1.pth'),
                    '--work-dir', str(tmp_path / 'w')])
    assert res.returncode == 1, res.stdout[-2000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and 'Traceback' not in res.stderr
    assert 'epoch_1.pth does not match the model config' in last and 'unexpected' in last
    assert not (tmp_path / 'w' / 'predictions.json').exists()


def test_missing_java_is_one_clear_line(trained_teacher, tmp_path):
    cfg, work = trained_teacher
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    # a PATH with python's own folder but no java
    os.symlink(sys.executable, bindir / 'python')
    res = run_tool(['tools/test.py', cfg, str(work / 'epoch_1.pth'), '--work-dir',
                    str(tmp_path)], env=dict(PATH=str(bindir)))
    assert res.returncode == 1, res.stderr[-2000:]
    last = res.stderr.strip().splitlines()[-1]
    assert 'java' in last.lower() and 'Traceback' not in res.stderr


def test_amp_on_cpu_trains_under_bfloat16_autocast(tiny_root, tmp_path):
    cfg = write_tiny_config(tmp_path / 'teacher.py', tiny_root)
    res = run_tool(['tools/train.py', cfg, '--work-dir', str(tmp_path), '--amp',
                    '--cfg-options', 'train_cfg.max_epochs=1'])
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert "type='CPUAutocastOptimWrapper'" in log
    assert (tmp_path / 'epoch_1.pth').is_file()


def test_cpu_autocast_wrapper_runs_the_forward_in_bfloat16():
    from capdistill.engine.amp import CPUAutocastOptimWrapper
    lin = torch.nn.Linear(4, 4)
    wrapper = CPUAutocastOptimWrapper(torch.optim.SGD(lin.parameters(), lr=0.1))
    with wrapper.optim_context(lin):
        out = lin(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16


def test_demo_table_cost_columns(trained_teacher):
    """tools/run_demo.py's cost columns, on the tiny teacher run."""
    from tools.run_demo import format_table, measure

    from capdistill.utils import trust_directory
    cfg, work = trained_teacher
    trust_directory(str(work))
    threads = torch.get_num_threads()
    try:
        cost = measure(cfg, str(work / 'epoch_1.pth'))
    finally:
        torch.set_num_threads(threads)
    assert cost['params'] == cost['params_training'] > 0 and cost['flops'] > 0
    assert all(cost[k] > 0 for k in ('greedy_b1', 'beam_b1', 'greedy_b32', 'beam_b32'))
    row = dict(model='teacher', Bleu_4=0.1, METEOR=0.2, ROUGE_L=0.3, CIDEr=0.4, **cost)
    assert format_table([row]).splitlines()[2].startswith(
        '| teacher | 10.0 | 20.0 | 30.0 | 40.0 | ')


@pytest.mark.parametrize('args,expected', [
    (['tools/dist_train.sh'], 'usage: bash tools/dist_train.sh CONFIG NPROC_PER_NODE'),
    (['tools/dist_train.sh', 'configs/nope.py', '2'],
     'error: Config file not found: configs/nope.py'),
    (['tools/dist_train.sh', CAPDEMO_STUDENT, 'two'], 'NPROC_PER_NODE must be a positive integer'),
    (['tools/dist_test.sh', CAPDEMO_STUDENT, 'nope.pth', '2'], 'error: not found: nope.pth'),
])
def test_dist_scripts_refuse_bad_arguments_in_one_line(args, expected):
    res = run_tool(['bash', *args])
    assert res.returncode in (1, 2)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], res.stderr


def test_launch_scripts_choose_python():
    """$PYTHON, else the active virtualenv's python, else the checkout's .venv."""
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHON', 'VIRTUAL_ENV')}

    def chosen(**extra):
        res = subprocess.run(['bash', '-c', 'source tools/_python.sh && echo "$PYTHON"'],
                             cwd=REPO, env=dict(env, **extra), capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    venv = os.path.join(REPO, '.venv', 'bin', 'python')
    assert chosen() == (venv if os.access(venv, os.X_OK) else 'python')
    assert chosen(VIRTUAL_ENV='/opt/other-env') == 'python'
    assert chosen(PYTHON='/usr/bin/python3.11') == '/usr/bin/python3.11'
