"""A self-contained HTML page of test results, to find a captioner's worst cases.

One row per video: a strip of sampled frames (inline JPEG, where the video file is
found), the generated caption, the teacher's caption when given, the references and
the per-video scores. Clicking a score column header sorts by it; the page opens
sorted by CIDEr, lowest first.
"""
import base64
import html
import io
import json
import os
import os.path as osp

import numpy as np

from capdistill.datasets.video_io import VIDEO_EXTENSIONS, VideoReadError, read_video_frames

__all__ = ['write_report', 'find_video', 'frame_strip']

_SORT_JS = """
function sortBy(col, numeric) {
  var tbody = document.getElementById('rows');
  var rows = Array.prototype.slice.call(tbody.rows);
  var th = document.querySelectorAll('th')[col];
  var asc = th.getAttribute('data-dir') !== 'asc';
  document.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-dir'); });
  th.setAttribute('data-dir', asc ? 'asc' : 'desc');
  rows.sort(function (a, b) {
    var x = a.cells[col].getAttribute('data-v'), y = b.cells[col].getAttribute('data-v');
    if (numeric) { x = parseFloat(x); y = parseFloat(y); }
    return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
  });
  rows.forEach(function (r) { tbody.appendChild(r); });
}
"""

_CSS = """
body { font-family: sans-serif; margin: 1em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; font-size: 13px; }
th { background: #eee; cursor: pointer; position: sticky; top: 0; }
th[data-dir=asc]::after { content: ' \\25B2'; } th[data-dir=desc]::after { content: ' \\25BC'; }
td.strip { white-space: nowrap; } td.strip img { height: 64px; margin-right: 4px; }
td.pred { font-weight: bold; } td.teacher { color: #1a5fb4; }
ul { margin: 0; padding-left: 1.2em; } .missing { color: #999; font-style: italic; }
"""


def find_video(video_dir, video_id):
    """The file of ``video_id`` in ``video_dir`` (any video extension), or None."""
    if not video_dir:
        return None
    for ext in VIDEO_EXTENSIONS:
        path = osp.join(video_dir, video_id + ext)
        if osp.isfile(path):
            return path
    path = osp.join(video_dir, video_id)
    return path if osp.isfile(path) else None


def frame_strip(path, num_frames=6, height=64, quality=80):
    """``num_frames`` uniformly sampled frames of ``path`` as base64 JPEG strings."""
    from PIL import Image
    frames = read_video_frames(path, num_frames=num_frames)
    out = []
    for frame in frames:
        img = Image.fromarray(np.ascontiguousarray(frame))
        width = max(1, round(img.width * height / img.height))
        img = img.resize((width, height), Image.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format='JPEG', quality=quality)
        out.append(base64.b64encode(buf.getvalue()).decode('ascii'))
    return out


def _fmt(value):
    return '' if value is None else f'{value:.3f}'


def write_report(out_file, predictions, references, per_video=None, aggregate=None,
                 teacher_captions=None, video_dir=None, num_frames=6, title='Caption results'):
    """Write one HTML page (no external files) and return its path.

    Args:
        out_file: the ``.html`` file to write (parent folders are created).
        predictions (dict): video id -> generated caption.
        references (dict): video id -> list of reference captions.
        per_video (dict, optional): video id -> {metric: score}.
        aggregate (dict, optional): metric -> score, shown above the table.
        teacher_captions (dict, optional): video id -> the teacher's caption.
        video_dir (str, optional): where ``<video id>.<ext>`` files are looked up for the
            frame strips; videos not found (or unreadable) get a note instead.
        num_frames (int): frames per strip (0 for none).
    """
    per_video = per_video or {}
    teacher_captions = teacher_captions or {}
    metrics = []
    for scores in per_video.values():
        for name in scores:
            if name not in metrics:
                metrics.append(name)
    cols = ['video', 'frames', 'caption'] + (['teacher'] if teacher_captions else [])
    cols += ['references'] + metrics
    sort_col = cols.index('CIDEr') if 'CIDEr' in cols else None

    def order(vid):
        score = per_video.get(vid, {}).get('CIDEr')
        return (score if score is not None else float('inf'), vid)

    rows = []
    found = 0
    for vid in sorted(predictions, key=order):
        cells = [f'<td data-v="{html.escape(vid)}">{html.escape(vid)}</td>']
        path = find_video(video_dir, vid) if num_frames else None
        strip = '<span class="missing">no video file</span>'
        if path:
            try:
                imgs = frame_strip(path, num_frames=num_frames)
                strip = ''.join(f'<img src="data:image/jpeg;base64,{b}" alt="frame {i + 1}">'
                                for i, b in enumerate(imgs))
                found += 1
            except VideoReadError as exc:
                strip = f'<span class="missing">{html.escape(exc.reason)}</span>'
        cells.append(f'<td class="strip" data-v="">{strip}</td>')
        pred = str(predictions[vid])
        cells.append(f'<td class="pred" data-v="{html.escape(pred)}">{html.escape(pred)}</td>')
        if teacher_captions:
            t = str(teacher_captions.get(vid, ''))
            cells.append(f'<td class="teacher" data-v="{html.escape(t)}">{html.escape(t)}</td>')
        refs = ''.join(f'<li>{html.escape(str(r))}</li>' for r in references.get(vid, []))
        cells.append(f'<td data-v=""><ul>{refs}</ul></td>')
        for name in metrics:
            value = per_video.get(vid, {}).get(name)
            data = 'NaN' if value is None else repr(float(value))
            cells.append(f'<td data-v="{data}">{_fmt(value)}</td>')
        rows.append(f'<tr id="{html.escape(vid)}">' + ''.join(cells) + '</tr>')

    heads = []
    for i, name in enumerate(cols):
        numeric = 'true' if name in metrics else 'false'
        attr = ' data-dir="asc"' if i == sort_col else ''
        heads.append(f'<th{attr} onclick="sortBy({i}, {numeric})">{html.escape(name)}</th>')
    summary = ''
    if aggregate:
        items = ''.join(f'<td><b>{html.escape(k)}</b> {v:.4f}</td>' for k, v in aggregate.items())
        summary = f'<table class="aggregate"><tr>{items}</tr></table>'
    note = (f'<p>{len(predictions)} videos; frames shown for {found}'
            + (f' (from {html.escape(str(video_dir))})' if video_dir else '')
            + '. Click a column header to sort; sorted by CIDEr, lowest first.</p>')
    page = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}'
            f'</title><style>{_CSS}</style><script>{_SORT_JS}</script></head><body>\n'
            f'<h1>{html.escape(title)}</h1>\n{summary}\n{note}\n'
            f'<table><thead><tr>{"".join(heads)}</tr></thead>\n<tbody id="rows">\n'
            + '\n'.join(rows) + '\n</tbody></table></body></html>\n')
    parent = osp.dirname(osp.abspath(out_file))
    os.makedirs(parent, exist_ok=True)
    with open(out_file, 'w', encoding='utf-8') as f:
        f.write(page)
    return out_file


def write_report_from_json(results_file, references, out_file, **kwargs):
    """:func:`write_report` from a ``CaptionMetric`` ``out_file`` json."""
    with open(results_file, encoding='utf-8') as f:
        res = json.load(f)
    kwargs.setdefault('teacher_captions', res.get('teacher_captions'))
    return write_report(out_file, res['predictions'], references,
                        per_video=res.get('per_video'), aggregate=res.get('aggregate'),
                        **kwargs)
