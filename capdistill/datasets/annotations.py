"""Reading caption annotations and split lists in the layouts researchers have."""
import hashlib
import json
import os
import pickle
from collections import OrderedDict


class DataError(ValueError):
    """Bad or inconsistent dataset files; the message names the file and entry."""


def file_hash(path):
    """Short SHA-1 of a file's bytes: derived files (caches, vocabularies) are keyed to it."""
    h = hashlib.sha1()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()[:16]


def _load_json(path):
    if not os.path.isfile(path):
        raise DataError(f'Annotation file not found: {path}. See data/README.md for the '
                        'expected layout.')
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f'{path}: not valid json ({exc}). Re-download or re-create the '
                        'file.') from None


def load_captions(path):
    """Video id -> list of captions, from MSVD, MSR-VTT or VATEX json.

    Recognised layouts: ``{"metadata": [{"video_id", "sentence"}]}`` (MSVD, reference
    release), ``{"sentences": [{"video_id", "caption"}]}`` (MSR-VTT), and a list of
    ``{"videoID", "enCap": [...]}`` (VATEX).
    """
    data = _load_json(path)
    if isinstance(data, dict) and 'sentences' in data:
        entries, vid_key, cap_key = data['sentences'], 'video_id', 'caption'
    elif isinstance(data, dict) and 'metadata' in data:
        entries, vid_key, cap_key = data['metadata'], 'video_id', 'sentence'
    elif isinstance(data, list) and (not data or isinstance(data[0], dict)
                                     and 'videoID' in data[0]):
        entries, vid_key, cap_key = _vatex_entries(path, data), 'videoID', 'enCap'
    else:
        raise DataError(f'{path}: unknown caption layout; expected a "sentences" (MSR-VTT) '
                        'or "metadata" (MSVD) list, or a VATEX list with "videoID"/"enCap".')
    if not isinstance(entries, list):
        raise DataError(f'{path}: the caption entries must be a list, got '
                        f'{type(entries).__name__}.')
    captions = OrderedDict()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DataError(f'{path}: entry {i} is not an object with {vid_key!r} and '
                            f'{cap_key!r}.')
        vid, cap = entry.get(vid_key), entry.get(cap_key)
        if not isinstance(vid, str) or not vid:
            raise DataError(f'{path}: entry {i} has no {vid_key!r}.')
        if not isinstance(cap, str) or not cap.strip():
            raise DataError(f'{path}: entry {i} (video {vid!r}) has an empty caption; '
                            'fix or remove that entry.')
        captions.setdefault(vid, []).append(cap.strip())
    return captions


def _vatex_entries(path, data):
    """One ``{videoID, enCap}`` entry per caption, checking the per-video lists."""
    seen, entries = {}, []
    for i, e in enumerate(data):
        if not isinstance(e, dict):
            raise DataError(f'{path}: entry {i} is not an object with "videoID"/"enCap".')
        vid = e.get('videoID')
        if vid in seen:
            raise DataError(f'{path}: duplicate video id {vid!r} (entries {seen[vid]} '
                            f'and {i}); each VATEX video must appear once.')
        seen[vid] = i
        if not isinstance(e.get('enCap'), list) or not e['enCap']:
            raise DataError(f'{path}: entry {i} (video {vid!r}) has no "enCap" list.')
        entries += [dict(videoID=vid, enCap=c) for c in e['enCap']]
    return entries


def load_official_splits(path):
    """Split name -> ids from the ``"videos"`` entries of MSR-VTT's videodatainfo.json."""
    data = _load_json(path)
    splits = {}
    seen = set()
    for i, v in enumerate(data.get('videos', []) if isinstance(data, dict) else []):
        if not isinstance(v, dict) or not isinstance(v.get('video_id'), str):
            raise DataError(f'{path}: "videos" entry {i} has no "video_id".')
        if v['video_id'] in seen:
            raise DataError(f'{path}: duplicate video id {v["video_id"]!r} in "videos" '
                            f'(entry {i}).')
        seen.add(v['video_id'])
        name = {'validate': 'valid', 'val': 'valid'}.get(v.get('split'), v.get('split'))
        splits.setdefault(name, []).append(v['video_id'])
    return splits


def load_split(path, allow_pickle=False):
    """Video ids of one split from .json (list), .txt (one per line) or .pkl.

    Unpickling runs code from the file, so .pkl needs ``allow_pickle=True``.
    """
    if not os.path.isfile(path):
        raise DataError(f'Split file not found: {path}.')
    ext = os.path.splitext(path)[1].lower()
    if ext == '.pkl':
        if not allow_pickle:
            raise DataError(f'{path}: reading a .pkl split runs code from the file; set '
                            'allow_pickle=True in the dataset config if you trust it, or '
                            'convert it to .json/.txt.')
        with open(path, 'rb') as f:
            ids = pickle.load(f)
    elif ext == '.json':
        ids = _load_json(path)
    elif ext == '.txt':
        try:
            with open(path, encoding='utf-8') as f:
                ids = [line.strip() for line in f if line.strip()]
        except UnicodeDecodeError as exc:
            raise DataError(f'{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); '
                            'a .txt split holds one video id per line.') from None
    else:
        raise DataError(f'{path}: unsupported split format {ext!r} (use .json, .txt or .pkl).')
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, str) for i in ids):
        raise DataError(f'{path}: a split must be a list of video id strings.')
    seen = set()
    dups = [i for i in ids if i in seen or seen.add(i)]
    if dups:
        raise DataError(f'{path}: duplicate video ids {dups[:5]} ({len(dups)} in all); '
                        'each video may appear once per split.')
    return list(ids)
