"""Once-per-dataset preprocessing of caption annotations, cached on disk.

Concepts (nouns/verbs of every caption), TF-IDF and consensus grades and the teacher
caption of each video are computed once from the annotation file and stored as json
under ``cache_dir`` (default: ``.capdistill_cache/`` next to the annotation file, or
``~/.cache/capdistill`` if that folder cannot be written). The cache file name holds a
hash of the annotation file's bytes and of the preprocessing version, so an edited
annotation file is preprocessed again and a stale cache is never read.
"""
import json
import os
import os.path as osp

from .annotations import file_hash, load_captions

VERSION = 2  # bump when concepts or grades change meaning


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


def cache_path(ann_file, cache_dir=None):
    """Where the preprocessed annotations of ``ann_file`` live."""
    if cache_dir is None:
        cache_dir = osp.join(osp.dirname(osp.abspath(ann_file)), '.capdistill_cache')
        if not _writable(cache_dir):
            cache_dir = osp.join(osp.expanduser('~'), '.cache', 'capdistill')
    stem = osp.splitext(osp.basename(ann_file))[0]
    return osp.join(cache_dir, f'{stem}.v{VERSION}.{file_hash(ann_file)}.json')


def preprocess_captions(captions):
    """Video id -> dict(captions, nouns, verbs, tfidf, consensus, teacher)."""
    from .concepts import caption_concepts
    from .grading import consensus_grades, tfidf_grades
    tfidf = tfidf_grades(captions)
    consensus = consensus_grades(captions)
    out = {}
    for vid, caps in captions.items():
        concepts = [caption_concepts(c) for c in caps]
        grades, top = tfidf[vid]
        out[vid] = dict(captions=list(caps), nouns=[c[0] for c in concepts],
                        verbs=[c[1] for c in concepts],
                        tfidf=[round(g, 6) for g in grades],
                        consensus=[round(g, 6) for g in consensus[vid]], teacher=top)
    return out


def load_preprocessed(ann_file, cache_dir=None, captions=None):
    """Preprocessed annotations of ``ann_file``, computed on the first call and cached.

    Several processes may build the cache at once: each writes a private temporary
    file and renames it into place, so readers never see a partial file.
    """
    path = cache_path(ann_file, cache_dir)
    if osp.isfile(path):
        try:
            with open(path, encoding='utf-8') as f:
                return json.load(f)
        except (OSError, json.JSONDecodeError):
            pass  # damaged cache: rebuild it below
    if captions is None:
        captions = load_captions(ann_file)
    data = preprocess_captions(captions)
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(data, f)
    os.replace(tmp, path)
    return data
