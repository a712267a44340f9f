"""Once-per-dataset preprocessing of caption annotations, cached on disk.

Concepts (nouns/verbs of every caption), TF-IDF grades and the teacher caption of
each video are computed once from the annotation file and stored as json
under ``cache_dir`` (default: ``.capdistill_cache/`` next to the annotation file, or
``~/.cache/capdistill`` if that folder cannot be written). The cache file name holds a
hash of the annotation file's bytes and of the preprocessing version, so an edited
annotation file is preprocessed again and a stale cache is never read. Consensus
grades (leave-one-out CIDEr-D, more than half of the cold build's time) are computed
and cached, in a file of their own, only when a dataset asks for them.

Token ids of the training captions are cached there too (:func:`cached_token_ids`, a
``.npy`` per list of captions, tokenizer and length), since tokenising ~130,000
MSR-VTT captions with CLIP's BPE takes minutes on every build.
"""
import hashlib
import json
import os
import os.path as osp

from .annotations import file_hash, load_captions

VERSION = 3  # bump when concepts or grades change meaning (3: consensus on its own)


def _writable(folder):
    try:
        os.makedirs(folder, exist_ok=True)
        probe = osp.join(folder, f'.probe.{os.getpid()}')
        with open(probe, 'w'):
            pass
        os.remove(probe)
        return True
    except OSError:
        return False


def _cache_folder(ann_file, cache_dir=None):
    if cache_dir is None:
        cache_dir = osp.join(osp.dirname(osp.abspath(ann_file)), '.capdistill_cache')
        if not _writable(cache_dir):
            cache_dir = osp.join(osp.expanduser('~'), '.cache', 'capdistill')
    return cache_dir


def cache_path(ann_file, cache_dir=None, part=''):
    """Where the preprocessed annotations of ``ann_file`` live (``part='consensus'``:
    its consensus grades)."""
    cache_dir = _cache_folder(ann_file, cache_dir)
    stem = osp.splitext(osp.basename(ann_file))[0] + (f'.{part}' if part else '')
    return osp.join(cache_dir, f'{stem}.v{VERSION}.{file_hash(ann_file)}.json')


def preprocess_captions(captions, consensus=True):
    """Video id -> dict(captions, nouns, verbs, tfidf, teacher[, consensus])."""
    from .concepts import caption_concepts
    from .grading import tfidf_grades
    tfidf = tfidf_grades(captions)
    out = {}
    for vid, caps in captions.items():
        concepts = [caption_concepts(c) for c in caps]
        grades, top = tfidf[vid]
        out[vid] = dict(captions=list(caps), nouns=[c[0] for c in concepts],
                        verbs=[c[1] for c in concepts],
                        tfidf=[round(g, 6) for g in grades], teacher=top)
    if consensus:
        for vid, grades in consensus_part(captions).items():
            out[vid]['consensus'] = grades
    return out


def consensus_part(captions):
    """Video id -> consensus grades (rounded as cached)."""
    from .grading import consensus_grades
    return {vid: [round(g, 6) for g in grades]
            for vid, grades in consensus_grades(captions).items()}


def _cached_json(path, compute):
    if osp.isfile(path):
        try:
            with open(path, encoding='utf-8') as f:
                return json.load(f)
        except (OSError, json.JSONDecodeError):
            pass  # damaged cache: rebuild it below
    data = compute()
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(data, f)
    os.replace(tmp, path)
    return data


def load_preprocessed(ann_file, cache_dir=None, captions=None, consensus=False):
    """Preprocessed annotations of ``ann_file``, computed on the first call and cached.

    ``consensus=True`` adds each video's ``consensus`` grades (cached in a file of
    their own, computed on the first call that asks for them).

    Several processes may build the cache at once: each writes a private temporary
    file and renames it into place, so readers never see a partial file.
    """
    def get_captions():
        nonlocal captions
        if captions is None:
            captions = load_captions(ann_file)
        return captions

    data = _cached_json(cache_path(ann_file, cache_dir),
                        lambda: preprocess_captions(get_captions(), consensus=False))
    if consensus:
        grades = _cached_json(cache_path(ann_file, cache_dir, 'consensus'),
                              lambda: consensus_part(get_captions()))
        for vid, info in data.items():
            info['consensus'] = grades[vid]
    return data


def tokenizer_key(tokenizer):
    """What decides a tokenizer's ids: its class, vocabulary (and its base tokenizer's)
    and the versions of the text libraries it may use (open_clip's BPE, ftfy)."""
    from importlib.metadata import PackageNotFoundError, version
    versions = []
    for package in ('open_clip_torch', 'ftfy'):
        try:
            versions.append(version(package))
        except PackageNotFoundError:
            versions.append(None)
    base = getattr(tokenizer, 'base', None)
    return json.dumps([type(tokenizer).__module__, type(tokenizer).__qualname__,
                       tokenizer.fingerprint(),
                       base.fingerprint() if hasattr(base, 'fingerprint') else None,
                       getattr(tokenizer, 'model_name', None), versions])


def cached_token_ids(ann_file, texts, tokenizer, max_len, cache_dir=None):
    """``tokenizer.encode_padded(t, max_len)`` of every text, as one int64 array, and a
    boolean array: which texts have more than ``max_len`` tokens (cut to ``max_len``).

    Stored beside the preprocessed annotations, keyed by a hash of the texts (in
    order), :func:`tokenizer_key` and the length: other captions, another vocabulary
    or another length give another file, so a stale array is never read. Each
    distinct text is encoded once.
    """
    # one token more than kept is encoded and stored: a longer text fills that column
    longer = _encoded_rows(ann_file, texts, tokenizer, max_len + 1, cache_dir)
    cut = longer[:, max_len + 2] != tokenizer.pad_id
    ids = longer[:, :max_len + 2].copy()
    ids[cut, max_len + 1] = tokenizer.eos_id
    return ids, cut


def _encoded_rows(ann_file, texts, tokenizer, max_len, cache_dir):
    """``encode_padded(t, max_len)`` of every text, from the cache file when it holds them."""
    import numpy as np
    try:
        key = tokenizer_key(tokenizer)
    except (AttributeError, NotImplementedError):  # cannot tell its vocabulary
        return np.stack([tokenizer.encode_padded(t, max_len) for t in texts]) if texts \
            else np.empty((0, max_len + 2), dtype=np.int64)
    digest = hashlib.sha1()
    for part in (key, str(max_len), *texts):
        digest.update(part.encode('utf-8', 'surrogatepass') + b'\0')
    stem = osp.splitext(osp.basename(ann_file))[0]
    path = osp.join(_cache_folder(ann_file, cache_dir),
                    f'{stem}.tokens.v{VERSION}.{digest.hexdigest()[:20]}.npy')
    if osp.isfile(path):
        try:
            ids = np.load(path, allow_pickle=False)
            if ids.shape == (len(texts), max_len + 2) and ids.dtype == np.int64:
                return ids
        except (OSError, ValueError):
            pass  # damaged cache: rebuild it below
    rows = {}
    ids = np.empty((len(texts), max_len + 2), dtype=np.int64)
    for i, text in enumerate(texts):
        row = rows.get(text)
        if row is None:
            row = rows[text] = tokenizer.encode_padded(text, max_len)
        ids[i] = row
    try:
        os.makedirs(osp.dirname(path), exist_ok=True)
        tmp = f'{path}.{os.getpid()}.tmp.npy'
        np.save(tmp, ids)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only place: the ids are still right, only not kept
    return ids
