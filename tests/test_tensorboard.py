"""The TensorBoard switch of the default runtime: a real run writes an event file."""
import pytest

from conftest import run_tool, write_tiny_config

pytest.importorskip('tensorboard')

TB_LINE = ("visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), "
           "dict(type='TensorboardVisBackend')])\n")


def test_tensorboard_backend_writes_loss_and_cider(tmp_path, tiny_root):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg = write_tiny_config(tmp_path / 'cfg.py', tiny_root)
    with open(cfg, 'a') as f:
        f.write(TB_LINE)  # the one line the README gives
    work = tmp_path / 'work'
    res = run_tool(['tools/train.py', cfg, '--work-dir', str(work),
                    '--cfg-options', 'train_cfg.max_epochs=1'])
    assert res.returncode == 0, res.stderr[-3000:]
    events = list(work.glob('*/vis_data/events.out.tfevents.*'))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = acc.Tags()['scalars']
    assert 'loss' in tags and 'CIDEr' in tags
    loss = acc.Scalars('loss')
    assert len(loss) == 6 and all(e.value > 0 for e in loss)  # 6 iterations, logged each
    assert [e.step for e in acc.Scalars('CIDEr')] == [1]
    assert list(work.glob('*/vis_data/scalars.json'))  # the local json stays for the curves
