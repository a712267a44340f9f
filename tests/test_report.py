"""The HTML report: capdistill.evaluation.report and tools/test.py --show-dir."""
import json
import os
import re

import torch

from conftest import make_tiny_dataset, run_tool, write_tiny_config
from test_captioning import write_video

from capdistill.apis import init_captioner
from capdistill.evaluation.report import write_report


def test_write_report_sorted_by_cider_with_frames(tmp_path):
    videos = tmp_path / 'videos'
    videos.mkdir()
    write_video(videos / 'v1.mp4')
    (videos / 'v2.mp4').write_bytes(b'not a video')
    preds = {'v0': 'a ball', 'v1': 'a red <b>ball</b>', 'v2': 'a cube'}
    refs = {'v0': ['a ball spins'], 'v1': ['a red ball', 'the red ball'], 'v2': ['a cube']}
    per_video = {'v0': {'CIDEr': 0.5, 'Bleu_1': 0.3}, 'v1': {'CIDEr': 1.5, 'Bleu_1': 0.9},
                 'v2': {'CIDEr': 0.1, 'Bleu_1': 0.1}}
    out = write_report(str(tmp_path / 'r' / 'report.html'), preds, refs, per_video=per_video,
                       aggregate={'CIDEr': 0.7}, teacher_captions={'v1': 'a red ball'},
                       video_dir=str(videos), num_frames=4)
    page = open(out, encoding='utf-8').read()
    rows = re.findall(r'<tr id="(\w+)">', page)
    assert rows == ['v2', 'v0', 'v1']  # lowest CIDEr first
    v1 = page[page.index('<tr id="v1">'):]
    v1 = v1[:v1.index('</tr>')]
    assert v1.count('data:image/jpeg;base64,') == 4
    assert 'a red &lt;b&gt;ball&lt;/b&gt;' in v1 and '<li>the red ball</li>' in v1
    assert 'class="teacher"' in v1
    assert 'no video file' in page and 'cannot be opened' in page  # v0 missing, v2 broken
    assert 'function sortBy' in page and 'src="http' not in page


def test_test_tool_show_dir(tmp_path):
    root = make_tiny_dataset(str(tmp_path / 'data'), num_videos=6)
    os.makedirs(os.path.join(root, 'raw_videos'))
    write_video(os.path.join(root, 'raw_videos', 'vid004.mp4'))
    cfg = write_tiny_config(tmp_path / 'cfg.py', root)
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=init_captioner(cfg).state_dict(), meta={}), ckpt)
    teacher = tmp_path / 'teacher.json'
    teacher.write_text(json.dumps({'predictions': {'vid004': 'a red ball moves left'}}))
    show = tmp_path / 'show'
    res = run_tool(['tools/test.py', cfg, ckpt, '--work-dir', str(tmp_path / 'work'),
                    '--show-dir', str(show), '--teacher-preds', str(teacher)])
    assert res.returncode == 0, res.stderr[-3000:]
    # predictions json by default in the work dir, and the aggregate table printed
    result = json.load(open(tmp_path / 'work' / 'predictions.json'))
    assert sorted(result['predictions']) == ['vid004', 'vid005']
    assert set(result['per_video']['vid004']) >= {'Bleu_4', 'CIDEr'}
    assert re.search(r'\| Bleu_1 \| .* \| CIDEr +\|', res.stdout)
    page = (show / 'report.html').read_text(encoding='utf-8')
    assert page.count('<tr id=') == 2 and 'a red ball moves left' in page
    assert page.count('data:image/jpeg;base64,') == 6 and 'no video file' in page
    assert '<li>a green shape moves right</li>' in page  # references of vid005


def test_report_file_has_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        out = write_report(str(tmp_path / 'report.html'), {'v0': 'a ball'}, {'v0': ['a ball']})
    finally:
        os.umask(old)
    assert os.stat(out).st_mode & 0o777 == 0o644
