"""One dataset class for every caption corpus in the reference layout."""
import os.path as osp

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from capdistill.registry import DATASETS, TOKENIZERS
from capdistill.utils.requirements import ModelConfigError
from capdistill.utils.values import is_int
from .annotations import DataError, load_captions, load_official_splits, load_split
from .preprocess import cached_token_ids, load_preprocessed


def model_feature_keys(model, deployed=False):
    """Inputs a model config reads: its ``feature_key`` (default ``'feats'``), or its
    student's and teachers' (only the student's with ``deployed``); None if unknown."""
    if not isinstance(model, dict):
        return None
    parts = [model.get('student'), None if deployed else model.get('teacher')] \
        if model.get('student') is not None else [model]
    if model.get('student') is not None and not deployed:  # teachers=dict(name=dict(model=...))
        parts += [dict(t['model'], **({'feature_key': t['feature_key']}
                                      if t.get('feature_key') else {}))
                  if isinstance(t, dict) and isinstance(t.get('model'), dict) else t
                  for t in (model.get('teachers') or {}).values() if t is not None]
    keys = set()
    for part in parts:
        if part is None:
            continue
        if not isinstance(part, dict) or 'visual_encoder' not in part:
            return None  # a model type that does not say what it reads
        keys.add(part.get('feature_key', 'feats'))
    return sorted(keys) or None


def restrict_features(cfg):
    """Set ``feature_keys`` of every dataloader's dataset to the inputs the model reads.

    Training loads what the model (student and teacher) reads; validation and test
    only what the deployed model reads. Datasets that already set ``feature_keys``,
    have no ``feature_dirs``, or lack an input the model reads (that error is the
    model's to report) are left alone.
    """
    for name, deployed in (('train_dataloader', False), ('val_dataloader', True),
                           ('test_dataloader', True)):
        loader = cfg.get(name)
        dataset = loader.get('dataset') if isinstance(loader, dict) else None
        keys = model_feature_keys(cfg.get('model'), deployed)
        if not isinstance(dataset, dict) or keys is None or 'feature_keys' in dataset \
                or not isinstance(dataset.get('feature_dirs'), dict) \
                or not set(keys) <= set(dataset['feature_dirs']):
            continue
        dataset['feature_keys'] = keys
    return cfg


def check_unlabeled_use(model, dataset):
    """Refuse training on unlabeled videos with a model that cannot learn from them.

    Only teacher-driven terms (sequence KD on the teacher's captions, ``seq_*``) use a
    video without captions; a model says so with ``uses_unlabeled`` (see
    :class:`DistillAlgorithm`). Anything else would read those videos and drop them.
    """
    count = getattr(dataset, 'num_unlabeled_videos', 0)
    if count and not getattr(model, 'uses_unlabeled', False):
        raise ModelConfigError(
            f'train_dataloader.dataset has {count} unlabeled videos (unlabeled_ids='
            f'{getattr(dataset, "unlabeled_ids", None)!r}), but the model '
            f'({type(model).__name__}) has no teacher-driven term that learns from videos '
            'without captions (sequence KD: a distill loss reading seq_logits); remove '
            'unlabeled_ids from the training dataset or add such a term.')


@DATASETS.register_module()
class CaptionDataset(BaseDataset):
    """Frame features + captions, in the reference release's layout.

    ``data_root/language/<ds>_caption.json``, ``data_root/splits/<ds>_<split>_list.*``
    and ``data_root/visual/<encoder>/frame_feature/<vid>.npy``.

    Args:
        ann_file (str): caption json, relative to ``data_root``.
        split_file (str, optional): list of this split's video ids (.json/.txt/.pkl).
            Without it, ``split`` is looked up in the annotation's ``"videos"``
            entries (MSR-VTT's official file).
        split (str): split name for the official file ('train', 'valid', 'test'), or
            ``'all'``: every video of ``ann_file`` (VATEX ships one file per split).
        feature_dirs (dict): input name -> folder of ``<vid>.npy`` (or an .h5 file),
            e.g. ``dict(feats='visual/clip_b32/frame_feature',
            teacher_feats='visual/clip_l14/frame_feature')``.
        feature_keys (list[str], optional): the inputs of ``feature_dirs`` to check
            and load (the others are never read); None: all. Training and testing
            set it to the inputs the model reads (:func:`restrict_features`).
        tokenizer (dict): tokenizer config (see ``capdistill.datasets.tokenizers``).
        max_len (int): caption tokens kept, without BOS/EOS.
        test_mode (bool): one sample per video with all references; otherwise one
            per (video, caption).
        skip_missing (bool): drop split ids without features or captions with one
            warning instead of stopping.
        allow_pickle (bool): accept a .pkl split file (unpickling runs its code).
        grade (str, optional): per-caption loss weight: ``'tfidf'`` (mean TF-IDF,
            normalised within the video) or ``'consensus'`` (leave-one-out CIDEr-D,
            normalised over the dataset); None gives every caption weight 1.
        concepts (dict, optional): add the video's object and action concepts (nouns
            and verbs of its teacher caption) to every sample, e.g.
            ``dict(max_objects=3, max_actions=3)``; off by default.
        cache_dir (str, optional): where preprocessed annotations (concepts, grades)
            are cached; default ``.capdistill_cache/`` beside the annotation file.
        teacher_caption (bool): add the video's "teacher caption" (the reference with
            the highest mean TF-IDF, where the concepts come from) to every training
            sample as ``teacher_caption``/``teacher_tokens`` (SFTCap trains its teacher
            path on it); off by default.
        unlabeled_ids (str, optional): a list of video ids (.json/.txt/.pkl, like a
            split file) used **without captions** (training only). Ids of the split
            among them have their captions hidden; other ids need features only. An
            unlabeled sample has ``labeled=False``, an empty caption whose tokens are
            ``[BOS, PAD, ...]`` (no target token) and ``weight=0``, so no caption loss
            counts it; only teacher-driven terms (sequence KD) learn from it, and a
            model without one is refused before training (:func:`check_unlabeled_use`).
            Every training sample carries ``labeled``.
        unlabeled_repeat (int): samples per unlabeled video and epoch (a captioned
            video has one per caption); e.g. 5 on capdemo weighs every video alike.
    """
    #: name used to find ``splits/<name>_<split>_list.{json,txt,pkl}`` when no
    #: split_file is given
    dataset_name = None

    def __init__(self, ann_file, feature_dirs, tokenizer, split_file=None, split='train',
                 max_len=22, skip_missing=False, allow_pickle=False, grade=None,
                 feature_keys=None,
                 concepts=None, cache_dir=None, teacher_caption=False, unlabeled_ids=None,
                 unlabeled_repeat=1, **kwargs):
        if grade not in (None, 'tfidf', 'consensus'):
            raise ValueError(f"grade must be None, 'tfidf' or 'consensus', not {grade!r}.")
        if concepts is not None and not isinstance(concepts, dict):
            concepts = {} if concepts is True else None
        self.grade = grade
        self.teacher_caption = bool(teacher_caption)
        self.concepts = None if concepts is None else dict(
            max_objects=concepts.get('max_objects', 3),
            max_actions=concepts.get('max_actions', 3))
        self.cache_dir = cache_dir
        self.split_file = split_file
        self.split = split
        self.feature_dirs = dict(feature_dirs)
        if feature_keys is not None:
            unknown = sorted(set(feature_keys) - set(self.feature_dirs))
            if unknown:
                raise ValueError(f'feature_keys {unknown} are not in feature_dirs '
                                 f'{sorted(self.feature_dirs)}; name inputs the dataset has.')
            self.feature_dirs = {k: v for k, v in self.feature_dirs.items()
                                 if k in set(feature_keys)}
        self.tokenizer = TOKENIZERS.build(tokenizer) if isinstance(tokenizer, dict) else tokenizer
        self.max_len = max_len
        self.skip_missing = skip_missing
        self.allow_pickle = allow_pickle
        indices = kwargs.get('indices')
        if indices is not None and (indices < 1 if is_int(indices) else len(indices) == 0):
            raise DataError(f'{ann_file}: indices={indices!r} keeps no samples of the split; '
                            'give a count >= 1, a non-empty list, or None for all of them.')
        if unlabeled_ids is not None and kwargs.get('test_mode'):
            raise DataError(f'unlabeled_ids={unlabeled_ids!r} is set on a test_mode dataset: '
                            'validation and test score captions, so unlabeled videos are for '
                            'the training dataset only; remove it there.')
        if not isinstance(unlabeled_repeat, int) or unlabeled_repeat < 1:
            raise ValueError(f'unlabeled_repeat must be a positive integer, not '
                             f'{unlabeled_repeat!r}.')
        self.unlabeled_ids = unlabeled_ids
        self.unlabeled_repeat = unlabeled_repeat
        self.num_labeled_videos = self.num_unlabeled_videos = 0
        super().__init__(ann_file=ann_file, **kwargs)

    def _abs(self, path):
        return path if osp.isabs(path) else osp.join(self.data_root, path)

    def _split_ids(self, captions):
        if self.split_file:
            return load_split(self._abs(self.split_file), self.allow_pickle)
        if self.split == 'all':
            return list(captions)
        # split files of the reference layout win over the official file's "videos"
        if self.dataset_name:
            for ext in ('.json', '.txt', '.pkl'):
                path = self._abs(f'splits/{self.dataset_name}_{self.split}_list{ext}')
                if osp.isfile(path):
                    self.split_file = path
                    return load_split(path, self.allow_pickle)
        splits = load_official_splits(self.ann_file)
        if self.split in splits:
            return splits[self.split]
        raise DataError(f'{self.ann_file}: no split_file given and no "videos" entries '
                        f'with split {self.split!r}; set split_file in the dataset config '
                        "(or split='all' when the file holds exactly this split's videos).")

    def _feature_source(self, key, vid):
        """``<folder>/<vid>.npy``, or ``(file.h5, vid)`` for an HDF5 feature file."""
        where = self._abs(self.feature_dirs[key])
        if where.lower().endswith(('.h5', '.hdf5')):
            return (where, vid)
        return osp.join(where, f'{vid}.npy')

    # kept for code that used the old name
    _feature_path = _feature_source

    def _h5_keys(self):
        keys = {}
        for key, where in self.feature_dirs.items():
            where = self._abs(where)
            if where.lower().endswith(('.h5', '.hdf5')):
                if not osp.isfile(where):
                    raise DataError(f'HDF5 feature file not found: {where} (input {key!r}).')
                import h5py
                try:
                    with h5py.File(where, 'r') as f:
                        keys[key] = set(f.keys())
                except OSError as exc:
                    raise DataError(f'{where}: unreadable HDF5 file ({exc}).') from None
        return keys

    def _concept_ids(self, words, k):
        ids = np.full(k, self.tokenizer.pad_id, dtype=np.int64)
        first = self.__dict__.setdefault('_first_ids', {})  # a few hundred distinct words
        for i, w in enumerate(words[:k]):
            if w not in first:
                enc = self.tokenizer.encode(w)
                first[w] = enc[0] if enc else None
            if first[w] is not None:
                ids[i] = first[w]
        return ids

    def _token_rows(self, captions, ids, skip, prep):
        """Padded token ids of every training caption (and teacher caption) in the
        order the data list takes them, from the preprocessing cache when possible."""
        texts, teacher_rows = [], []
        for vid in ids:
            if vid in skip:
                continue
            if self.teacher_caption:
                teacher_rows.append(len(texts))
                texts.append(captions[vid][prep[vid]['teacher']])
            texts.extend(captions[vid])
        rows, cut = cached_token_ids(self.ann_file, texts, self.tokenizer, self.max_len,
                                     self.cache_dir)
        cut[teacher_rows] = False  # a teacher caption repeats a training caption: count it once
        if cut.any():
            n = len(texts) - len(teacher_rows)
            print_log(f'{type(self).__name__} {self.split_file or self.split}: '
                      f'{int(cut.sum())} of {n} training captions ({100 * cut.sum() / n:.1f}%) '
                      f'have more than max_len={self.max_len} tokens and are cut to it (an '
                      'EOS after the last kept token); raise max_len to keep them whole.',
                      logger='current')
        return iter(rows)

    def _unlabeled_split(self, ids):
        """The split's captioned ids, and all ids in order with the unlabeled ones last."""
        if self.unlabeled_ids is None:
            return ids, ids, set()
        unlabeled = load_split(self._abs(self.unlabeled_ids), self.allow_pickle)
        hidden = set(unlabeled)
        labeled = [v for v in ids if v not in hidden]
        return labeled, labeled + unlabeled, hidden

    def _unlabeled_sample(self, vid, paths):
        """A video without captions: an empty caption no caption loss counts."""
        tokens = np.full(self.max_len + 2, self.tokenizer.pad_id, dtype=np.int64)
        tokens[0] = self.tokenizer.bos_id  # a start token, so decoders see a valid prefix
        extra = {}
        if self.concepts is not None:
            extra = dict(obj_words=[], act_words=[],
                         obj_tokens=self._concept_ids([], self.concepts['max_objects']),
                         act_tokens=self._concept_ids([], self.concepts['max_actions']))
        if self.teacher_caption:
            extra.update(teacher_caption='', teacher_tokens=tokens.copy())
        return dict(video_id=vid, caption='', tokens=tokens, weight=0.0, labeled=False,
                    feature_paths=paths, **extra)

    def load_data_list(self):
        captions = load_captions(self.ann_file)
        split_ids = self._split_ids(captions)
        labeled_ids, ids, hidden = self._unlabeled_split(split_ids)
        h5_keys = self._h5_keys()
        missing = {}
        for vid in ids:
            if vid not in captions and vid not in hidden:
                missing[vid] = f'no captions in {self.ann_file}'
                continue
            for key in self.feature_dirs:
                src = self._feature_source(key, vid)
                if key in h5_keys:
                    if vid not in h5_keys[key]:
                        missing[vid] = f'no {key} entry in {src[0]}'
                        break
                elif not osp.isfile(src):
                    missing[vid] = f'no {key} file {src}'
                    break
        if missing:
            first = '; '.join(f'{v}: {why}' for v, why in list(missing.items())[:3])
            where = f'split {self.split_file or self.split!r}' + (
                f' and unlabeled_ids {self.unlabeled_ids!r}' if hidden else '')
            msg = f'{len(missing)} of {len(ids)} videos in {where} are incomplete ({first}).'
            if not self.skip_missing:
                raise DataError(msg + ' Extract the missing features (tools/extract_features.py)'
                                ' or set skip_missing=True to leave them out.')
            print_log(msg + ' They are left out (skip_missing=True).', logger='current',
                      level=30)
        prep = None
        if self.grade or self.concepts is not None or self.teacher_caption:
            prep = load_preprocessed(self.ann_file, self.cache_dir, captions,
                                     consensus=self.grade == 'consensus')
        data_list = []
        token_rows = None if self.test_mode else self._token_rows(
            captions, ids, set(missing) | hidden, prep)
        for vid in ids:
            if vid in missing:
                continue
            paths = {k: self._feature_source(k, vid) for k in self.feature_dirs}
            if vid in hidden:
                data_list += [self._unlabeled_sample(vid, paths)
                              for _ in range(self.unlabeled_repeat)]
                continue
            refs = captions[vid]
            extra = {}
            if self.concepts is not None:
                info = prep[vid]
                nouns = info['nouns'][info['teacher']][:self.concepts['max_objects']]
                verbs = info['verbs'][info['teacher']][:self.concepts['max_actions']]
                extra = dict(obj_words=nouns, act_words=verbs,
                             obj_tokens=self._concept_ids(nouns, self.concepts['max_objects']),
                             act_tokens=self._concept_ids(verbs, self.concepts['max_actions']))
            if self.test_mode:
                data_list.append(dict(video_id=vid, refs=refs, feature_paths=paths, **extra))
                continue
            weights = prep[vid][self.grade] if self.grade else [1.0] * len(refs)
            if self.teacher_caption:
                best = refs[prep[vid]['teacher']]
                extra = dict(extra, teacher_caption=best,
                             teacher_tokens=next(token_rows))
            for cap, weight in zip(refs, weights):
                tokens = next(token_rows)
                data_list.append(dict(video_id=vid, caption=cap, tokens=tokens,
                                      weight=float(weight), labeled=True,
                                      feature_paths=paths, **extra))
        if hidden:
            self._log_unlabeled(split_ids, labeled_ids, hidden, missing, data_list)
        if not data_list:
            raise DataError(f'{self.ann_file}: the split {self.split_file or self.split!r} '
                            'has no usable videos.')
        return data_list

    def _log_unlabeled(self, split_ids, labeled_ids, hidden, missing, data_list):
        labeled = [v for v in labeled_ids if v not in missing]
        unlabeled = [v for v in hidden if v not in missing]
        self.num_labeled_videos, self.num_unlabeled_videos = len(labeled), len(unlabeled)
        in_split = len(hidden & set(split_ids))
        n_unl = sum(1 for d in data_list if not d['labeled'])
        print_log(f'{type(self).__name__} {self.split_file or self.split}: {len(labeled)} '
                  f'captioned videos ({len(data_list) - n_unl} samples) and {len(unlabeled)} '
                  f'unlabeled videos ({n_unl} samples, x{self.unlabeled_repeat}; {in_split} of '
                  f'them split videos whose captions are hidden) from {self.unlabeled_ids}.',
                  logger='current')

    def get_video_ids(self):
        """Distinct video ids in order."""
        return list(dict.fromkeys(self.get_data_info(i)['video_id'] for i in range(len(self))))


@DATASETS.register_module()
class MSVDDataset(CaptionDataset):
    """MSVD in the reference layout; video ids are kept as given (YouTube-style names
    such as ``-4wsuPCjDBc_5_15`` in the official release, ``videoN`` in others)."""
    dataset_name = 'msvd'


@DATASETS.register_module()
class MSRVTTDataset(CaptionDataset):
    """MSR-VTT: the reference layout, or the official videodatainfo.json alone (its
    ``"videos"`` entries give the 6513/497/2990 split when no split file exists)."""
    dataset_name = 'msrvtt'


@DATASETS.register_module()
class VATEXDataset(CaptionDataset):
    """VATEX json (a list of ``{"videoID", "enCap": [...]}``) with frame features."""
    dataset_name = 'vatex'
