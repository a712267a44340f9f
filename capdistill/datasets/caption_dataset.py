"""One dataset class for every caption corpus in the reference layout."""
import os
import os.path as osp

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from capdistill.registry import DATASETS, TOKENIZERS
from .annotations import DataError, load_captions, load_official_splits, load_split


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
        split (str): split name for the official file ('train', 'valid', 'test').
        feature_dirs (dict): input name -> folder of ``<vid>.npy`` (or an .h5 file),
            e.g. ``dict(feats='visual/clip_b32/frame_feature',
            teacher_feats='visual/clip_l14/frame_feature')``.
        tokenizer (dict): tokenizer config (see ``capdistill.datasets.tokenizers``).
        max_len (int): caption tokens kept, without BOS/EOS.
        test_mode (bool): one sample per video with all references; otherwise one
            per (video, caption).
        skip_missing (bool): drop split ids without features or captions with one
            warning instead of stopping.
        allow_pickle (bool): accept a .pkl split file (unpickling runs its code).
    """

    def __init__(self, ann_file, feature_dirs, tokenizer, split_file=None, split='train',
                 max_len=22, skip_missing=False, allow_pickle=False, **kwargs):
        self.split_file = split_file
        self.split = split
        self.feature_dirs = dict(feature_dirs)
        self.tokenizer = TOKENIZERS.build(tokenizer) if isinstance(tokenizer, dict) else tokenizer
        self.max_len = max_len
        self.skip_missing = skip_missing
        self.allow_pickle = allow_pickle
        super().__init__(ann_file=ann_file, **kwargs)

    def _abs(self, path):
        return path if osp.isabs(path) else osp.join(self.data_root, path)

    def _split_ids(self, captions):
        if self.split_file:
            return load_split(self._abs(self.split_file), self.allow_pickle)
        splits = load_official_splits(self.ann_file)
        if self.split not in splits:
            raise DataError(f'{self.ann_file}: no split_file given and no "videos" entries '
                            f'with split {self.split!r}; set split_file in the dataset config.')
        return splits[self.split]

    def _feature_path(self, key, vid):
        folder = self._abs(self.feature_dirs[key])
        return osp.join(folder, f'{vid}.npy')

    def load_data_list(self):
        captions = load_captions(self.ann_file)
        ids = self._split_ids(captions)
        missing = {}
        for vid in ids:
            if vid not in captions:
                missing[vid] = f'no captions in {self.ann_file}'
                continue
            for key in self.feature_dirs:
                path = self._feature_path(key, vid)
                if not osp.isfile(path):
                    missing[vid] = f'no {key} file {path}'
                    break
        if missing:
            first = '; '.join(f'{v}: {why}' for v, why in list(missing.items())[:3])
            msg = (f'{len(missing)} of {len(ids)} videos in split '
                   f'{self.split_file or self.split!r} are incomplete ({first}).')
            if not self.skip_missing:
                raise DataError(msg + ' Extract the missing features (tools/extract_features.py)'
                                ' or set skip_missing=True to leave them out.')
            print_log(msg + ' They are left out (skip_missing=True).', logger='current',
                      level=30)
        data_list = []
        for vid in ids:
            if vid in missing:
                continue
            paths = {k: self._feature_path(k, vid) for k in self.feature_dirs}
            refs = captions[vid]
            if self.test_mode:
                data_list.append(dict(video_id=vid, refs=refs, feature_paths=paths))
                continue
            for cap in refs:
                tokens = self.tokenizer.encode_padded(cap, self.max_len)
                data_list.append(dict(video_id=vid, caption=cap, tokens=tokens,
                                      weight=1.0, feature_paths=paths))
        if not data_list:
            raise DataError(f'{self.ann_file}: the split {self.split_file or self.split!r} '
                            'has no usable videos.')
        return data_list

    def get_video_ids(self):
        """Distinct video ids in order."""
        return list(dict.fromkeys(self.get_data_info(i)['video_id'] for i in range(len(self))))
