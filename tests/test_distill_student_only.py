"""A distilled run is tested, captioned and costed with its student alone: no teacher,
no teacher checkpoint, and the same scores as evaluating the whole algorithm."""
import json
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from capdistill.apis.inference import init_captioner
from capdistill.registry import MODELS
from conftest import run_tool, run_tool_here, write_tiny_config
from tools.analysis import benchmark, get_flops

KD_MODEL = ("dict(type='DistillAlgorithm', student=_student, teacher=_teacher, "
            "teacher_ckpt='{ckpt}', "
            "recorders=dict(s=dict(source='student', module='visual_encoder', output=0), "
            "t=dict(source='teacher', module='encoder', output=0)), "
            "connectors=dict(c=dict(type='LinearConnector', in_dim=32, out_dim=32)), "
            "distill_losses=dict(loss_word=dict(type='WordKLLoss', tau=2.0), "
            "loss_feat=dict(type='FeatureMSELoss', inputs=dict(student='c(s)', teacher='t'))))")


def _save_teacher(config, ckpt):
    """A teacher checkpoint of ``config``'s model (random weights) at ``ckpt``."""
    with DefaultScope.overwrite_default_scope('capdistill'):
        teacher = MODELS.build(Config.fromfile(config).model)
    os.makedirs(os.path.dirname(ckpt), exist_ok=True)
    torch.save(dict(state_dict=teacher.state_dict()), ckpt)


@pytest.fixture(scope='module')
def distilled(tmp_path_factory, tiny_root):
    """A one-epoch distillation run; its teacher checkpoint is removed afterwards."""
    tmp = tmp_path_factory.mktemp('kd')
    ckpt = tmp / 'work_dirs' / 'tiny_teacher' / 'epoch_1.pth'
    _save_teacher(write_tiny_config(tmp / 'teacher.py', tiny_root), ckpt)
    cfg = write_tiny_config(tmp / 'kd.py', tiny_root,
                            model=KD_MODEL.format(ckpt=ckpt.parent / 'latest'))
    work = tmp / 'work'
    res = run_tool(['tools/train.py', cfg, '--work-dir', str(work),
                    '--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=9'])
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert log.count(f'teacher checkpoint: {ckpt}') == 1
    assert 'distill.loss_word' in log and 'distill.loss_feat' in log
    # today's way: the whole algorithm (teacher included) evaluated by the Runner
    full = Config.fromfile(cfg)
    full.work_dir = str(tmp / 'full')
    full.load_from = str(work / 'epoch_1.pth')
    full.test_evaluator['out_file'] = str(tmp / 'full.json')
    metrics = Runner.from_cfg(full).test()
    os.remove(ckpt)
    return cfg, work / 'epoch_1.pth', metrics, json.load(open(tmp / 'full.json'))


def test_test_tool_evaluates_the_student_alone_with_the_same_scores(distilled, tmp_path):
    cfg, ckpt, metrics, full = distilled
    out = tmp_path / 'student.json'
    res = run_tool(['tools/test.py', cfg, str(ckpt), '--work-dir', str(tmp_path),
                    '--out', str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'teacher checkpoint' not in res.stdout + res.stderr
    student = json.load(open(out))
    assert student['predictions'] == full['predictions']
    assert student['aggregate'] == pytest.approx(full['aggregate'])
    assert student['aggregate']['CIDEr'] == pytest.approx(metrics['CIDEr'])


def test_captioning_and_cost_tools_need_no_teacher_checkpoint(distilled, tmp_path):
    cfg, ckpt, _, _ = distilled
    model = init_captioner(cfg, str(ckpt))
    assert type(model).__name__ == 'Captioner' and not hasattr(model, 'teacher')
    state = torch.load(ckpt, map_location='cpu', weights_only=False)['state_dict']
    for k, v in model.state_dict().items():
        assert torch.equal(state[f'student.{k}'], v)
    flops = get_flops.main([cfg, '--num-frames', '4'])
    assert flops['teacher']['forward'] > flops['deployed']['forward'] > 0
    results = benchmark.main([cfg, str(ckpt), '--batch-sizes', '1', '--repeats', '1',
                              '--no-slow', '--no-teacher', '--num-frames', '4'])
    assert set(results) == {'student'}
    assert results['student']['params_total'] == sum(v.numel() for v in model.parameters())


def test_load_from_of_a_distillation_run_checked_by_the_run(distilled, tmp_path):
    """``load_from``: a distillation checkpoint of the same config loads; a captioner's is
    refused in the algorithm's own words (asked first by the checkpoint check)."""
    cfg, ckpt, _, _ = distilled
    teacher_ckpt = os.path.join(os.path.dirname(cfg), 'work_dirs', 'tiny_teacher', 'epoch_1.pth')
    # the fixture removed it
    _save_teacher(os.path.join(os.path.dirname(cfg), 'teacher.py'), teacher_ckpt)
    try:
        ok = run_tool(['tools/train.py', cfg, '--work-dir', str(tmp_path / 'a'), '--cfg-options',
                       f'load_from={ckpt}', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=9'])
        assert ok.returncode == 0, ok.stderr[-3000:]
        assert f'Load checkpoint from {ckpt}' in ok.stdout + ok.stderr
        wrong = run_tool_here(['tools/train.py', cfg, '--work-dir', str(tmp_path / 'b'),
                               '--cfg-options', f'load_from={teacher_ckpt}'])
        assert wrong.returncode == 1
        last = wrong.stderr.strip().splitlines()[-1]
        assert last.startswith('error: ') and 'model.student_ckpt=<that file>' in last
    finally:
        os.remove(teacher_ckpt)
