"""The caption metric under DDP: computed once on rank 0, padding removed, same scores."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, free_port, make_tiny_dataset, write_tiny_config

from capdistill.apis import init_captioner
from capdistill.evaluation.caption_scorer import SpiceModelsMissingError, _check_spice
from capdistill.evaluation.metrics import CaptionMetric

COUNTING_METRIC = '''
import os
from mmengine.dist import get_rank
from capdistill.registry import METRICS
from capdistill.evaluation.metrics import CaptionMetric


@METRICS.register_module()
class CountingCaptionMetric(CaptionMetric):
    """Records what each rank processed and where the scores were computed."""

    def _log(self, name, text):
        path = os.path.join(os.environ['COUNT_DIR'], f'{name}_rank{get_rank()}.txt')
        with open(path, 'a') as f:
            f.write(text)

    def process(self, data_batch, data_samples):
        super().process(data_batch, data_samples)
        self._log('process', ''.join(r['video_id'] + '\\n'
                                     for r in self.results[-len(data_samples):]))

    def compute_metrics(self, results):
        self._log('compute', ''.join(r['video_id'] + '\\n' for r in results))
        return super().compute_metrics(results)
'''


def _spice_missing():
    try:
        _check_spice()
    except SpiceModelsMissingError:
        return True
    return False


@pytest.fixture(scope='module')
def five_videos(tmp_path_factory):
    """15 videos: 10 train, 5 test; a randomly initialised teacher checkpoint."""
    tmp = tmp_path_factory.mktemp('ddp')
    root = make_tiny_dataset(str(tmp / 'data'), num_videos=15)
    plugin = tmp / 'plugin'
    plugin.mkdir()
    (plugin / 'counting_metric.py').write_text(COUNTING_METRIC)
    cfg = write_tiny_config(
        tmp / 'cfg.py', root,
        custom_imports=dict(imports=['counting_metric'], allow_failed_imports=False),
        test_evaluator=dict(type='CountingCaptionMetric', scorers=['Bleu', 'ROUGE_L', 'CIDEr']))
    torch.manual_seed(0)
    model = init_captioner(write_tiny_config(tmp / 'plain.py', root))
    ckpt = str(tmp / 'model.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=0)), ckpt)
    return tmp, cfg, ckpt


def _run(args, plugin, count_dir):
    os.makedirs(count_dir, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=f'{REPO}{os.pathsep}{plugin}', HF_HUB_OFFLINE='1',
               OMP_NUM_THREADS='1', COUNT_DIR=str(count_dir), PYTHON=sys.executable,
               PORT=str(free_port()))
    cmd = [sys.executable] + args if args[0].endswith('.py') else args
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _lines(path):
    return open(path).read().split() if os.path.exists(path) else []


def _single_process_scores(tmp, cfg, ckpt, out_file):
    """The same model and metric in this process, video by video, with no sampler."""
    from capdistill.apis import caption_video
    root = os.path.join(tmp, 'data')
    model = init_captioner(cfg, ckpt)
    sentences = json.load(open(os.path.join(root, 'language', 'tiny_caption.json')))['sentences']
    results = []
    for vid in json.load(open(os.path.join(root, 'splits', 'tiny_test_list.json'))):
        feats = os.path.join(root, 'visual', 'grid16', 'frame_feature', f'{vid}.npy')
        results.append(dict(video_id=vid, refs=[s['caption'] for s in sentences
                                                if s['video_id'] == vid],
                            pred_caption=caption_video(model, feats, num_frames=4)['caption']))
    CaptionMetric(scorers=['Bleu', 'ROUGE_L', 'CIDEr'], out_file=out_file).compute_metrics(results)
    return json.load(open(out_file))


def test_uneven_split_over_two_processes(five_videos):
    tmp, cfg, ckpt = five_videos
    plugin = tmp / 'plugin'
    dist = _run(['bash', 'tools/dist_test.sh', cfg, ckpt, '2', '--work-dir', str(tmp / 'w2'),
                 '--out', str(tmp / 'dist.json')], plugin, tmp / 'count2')
    assert dist.returncode == 0, (dist.stdout + dist.stderr)[-3000:]
    # 5 videos over 2 ranks: the sampler pads to 6, so one video is processed twice
    seen = _lines(tmp / 'count2' / 'process_rank0.txt') + _lines(tmp / 'count2' /
                                                                  'process_rank1.txt')
    assert len(seen) == 6 and len(set(seen)) == 5
    assert _lines(tmp / 'count2' / 'process_rank1.txt'), 'rank 1 did no work'
    # scored once, on rank 0, over the 5 distinct videos
    assert not os.path.exists(tmp / 'count2' / 'compute_rank1.txt')
    computed = _lines(tmp / 'count2' / 'compute_rank0.txt')
    assert sorted(set(computed)) == sorted(set(seen)) and len(set(computed)) == 5
    one = _single_process_scores(tmp, str(tmp / 'plain.py'), ckpt, str(tmp / 'single.json'))
    two = json.load(open(tmp / 'dist.json'))
    assert one['predictions'] == two['predictions'] and len(two['predictions']) == 5
    assert one['per_video'] == two['per_video']
    assert one['aggregate'] == two['aggregate'] and one['aggregate']['Bleu_1'] > 0
    # the aggregate table is printed once
    assert (dist.stdout + dist.stderr).count('| Bleu_1') == 1


def test_duplicates_are_scored_once():
    refs = ['a red ball moves left', 'the red object moves left']
    results = [dict(video_id='v0', pred_caption='a red ball moves left', refs=refs),
               dict(video_id='v1', pred_caption='a blue ball', refs=['a blue ball spins']),
               dict(video_id='v0', pred_caption='a red ball moves left', refs=refs)]
    metric = CaptionMetric(scorers=['Bleu', 'CIDEr'])
    assert metric.compute_metrics(results) == metric.compute_metrics(results[:2])


@pytest.mark.skipif(not _spice_missing(), reason='SPICE models are installed here')
def test_spice_missing_models_is_clear(five_videos):
    # the metric refuses SPICE when it is built, not after a whole evaluation run
    with pytest.raises(SpiceModelsMissingError, match='Stanford CoreNLP 3.6.0'):
        CaptionMetric(scorers=['Bleu', 'SPICE'])
    # from the command line: one line, before the test run starts
    tmp, cfg, ckpt = five_videos
    res = _run(['tools/test.py', cfg, ckpt, '--work-dir', str(tmp / 'w3'), '--cfg-options',
                'test_evaluator.scorers=[Bleu,SPICE]'], tmp / 'plugin', tmp / 'count3')
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith('error: SPICE needs') and 'Traceback' not in res.stderr
    assert 'scorers' in last
