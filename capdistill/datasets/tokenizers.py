"""Caption tokenisers behind one interface.

Every tokenizer maps text to ids without special tokens (``encode``) and back
(``decode``), and exposes ``pad_id``, ``bos_id``, ``eos_id`` and ``vocab_size``.
``encode_padded`` adds BOS/EOS and pads to a fixed length, as the datasets need.
"""
import collections
import json
import os
import re

import numpy as np

from capdistill.registry import TOKENIZERS

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


class BaseTokenizer:
    pad_id = 0
    bos_id = 1
    eos_id = 2

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    def encode_padded(self, text: str, max_len: int) -> np.ndarray:
        """``[BOS] words[:max_len] [EOS] [PAD]...`` as int64 of length ``max_len + 2``."""
        ids = [self.bos_id] + self.encode(text)[:max_len] + [self.eos_id]
        out = np.full(max_len + 2, self.pad_id, dtype=np.int64)
        out[:len(ids)] = ids
        return out

    def tokens(self) -> list:
        """The vocabulary's tokens in id order."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Hash of the ordered token list and special ids: equal means the same vocabulary."""
        if getattr(self, '_fingerprint', None) is None:
            import hashlib
            text = json.dumps([self.pad_id, self.bos_id, self.eos_id, list(self.tokens())],
                              ensure_ascii=False)
            self._fingerprint = hashlib.sha1(text.encode('utf-8')).hexdigest()[:16]
        return self._fingerprint

    def strip(self, ids) -> list:
        """Ids up to the first EOS, without BOS and padding."""
        out = []
        for i in (int(x) for x in ids):
            if i == self.eos_id:
                break
            if i not in (self.bos_id, self.pad_id):
                out.append(i)
        return out


def split_words(text: str) -> list:
    """Lower-cased word tokens; punctuation is dropped."""
    return _WORD.findall(text.lower())


@TOKENIZERS.register_module()
class WordTokenizer(BaseTokenizer):
    """A word vocabulary built from training captions.

    Ids 0-3 are ``[PAD] [BOS] [EOS] [UNK]``; words follow in order of decreasing
    count, then alphabetically, so a vocabulary is reproducible from its captions.

    Args:
        vocab_file (str): json list of words (without the special tokens), as
            written by :meth:`save`.
    """
    specials = ('[PAD]', '[BOS]', '[EOS]', '[UNK]')
    unk_id = 3

    def __init__(self, vocab_file=None, words=None, build_from=None, min_count=1):
        if words is None:
            if vocab_file is None:
                raise ValueError('WordTokenizer needs vocab_file (or words).')
            if not os.path.isfile(vocab_file):
                if build_from is None:
                    raise FileNotFoundError(
                        f'Vocabulary file not found: {vocab_file}. Give build_from='
                        'dict(ann_file=..., split_file=...) to build it from the training '
                        'captions.')
                built = self.build(self._training_captions(**build_from), min_count)
                built.save(vocab_file, meta=self._meta(min_count, build_from))
            elif build_from is not None:
                self._check_meta(vocab_file, self._meta(min_count, build_from))
            with open(vocab_file) as f:
                words = json.load(f)
        self.itos = list(self.specials) + list(words)
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @staticmethod
    def _training_captions(ann_file, split_file=None, allow_pickle=False):
        from .annotations import load_captions, load_split
        captions = load_captions(ann_file)
        ids = load_split(split_file, allow_pickle) if split_file else list(captions)
        return [c for vid in ids for c in captions.get(vid, [])]

    @classmethod
    def build(cls, captions, min_count=1):
        """A tokenizer over the words seen at least ``min_count`` times."""
        counts = collections.Counter(w for c in captions for w in split_words(c))
        words = sorted((w for w, n in counts.items() if n >= min_count),
                       key=lambda w: (-counts[w], w))
        return cls(words=words)

    @staticmethod
    def _meta(min_count, build_from):
        """How a vocabulary is built: settings plus the captions' content hash."""
        from .annotations import file_hash
        meta = dict(min_count=min_count, **build_from)
        if os.path.isfile(build_from['ann_file']):
            meta['ann_hash'] = file_hash(build_from['ann_file'])
        return meta

    @staticmethod
    def _check_meta(vocab_file, wanted):
        """Refuse a vocabulary built with other settings or captions than the config's.

        The vocabulary is built once and then reused by every later run and by testing;
        a config that changed ``min_count`` or the training split, or annotations that
        were rewritten since (new data in the same place), would otherwise be silently
        paired with the old vocabulary.
        """
        from .annotations import DataError
        meta_file = vocab_file + '.meta.json'
        if not os.path.isfile(meta_file):
            return
        with open(meta_file) as f:
            meta = json.load(f)
        diff = {k: (meta.get(k), v) for k, v in wanted.items()
                if k in ('min_count', 'split_file') and meta.get(k) != v}
        if diff:
            what = ', '.join(f'{k}={old!r} (config: {new!r})' for k, (old, new) in diff.items())
            raise DataError(f'{vocab_file} was built with {what}; delete it (and its '
                            '.meta.json) to rebuild, or point vocab_file elsewhere.')
        if 'ann_hash' in meta and 'ann_hash' in wanted and meta['ann_hash'] != wanted['ann_hash']:
            raise DataError(f'{vocab_file} was built from another version of '
                            f'{wanted["ann_file"]} (its captions changed since); delete it (and '
                            'its .meta.json) to rebuild it from the new captions; models '
                            'trained with the old vocabulary need the old file.')

    def save(self, path, meta=None):
        """Write the vocabulary atomically (several processes may build it at once).

        ``meta`` (how it was built) goes to ``<path>.meta.json`` beside it.
        """
        path = os.path.abspath(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f'{path}.{os.getpid()}.tmp'
        with open(tmp, 'w') as f:
            json.dump(self.itos[len(self.specials):], f, indent=0)
        if meta is not None:
            with open(tmp + '.meta', 'w') as f:
                json.dump(meta, f)
            os.replace(tmp + '.meta', path + '.meta.json')
        os.replace(tmp, path)

    @property
    def vocab_size(self):
        return len(self.itos)

    def tokens(self):
        return self.itos

    def encode(self, text):
        return [self.stoi.get(w, self.unk_id) for w in split_words(text)]

    def decode(self, ids):
        return ' '.join(self.itos[i] for i in self.strip(ids))


@TOKENIZERS.register_module()
class ClipBPETokenizer(BaseTokenizer):
    """CLIP's byte-pair encoding (49,408 tokens), as the reference code uses.

    The BPE vocabulary ships with open_clip, so this works offline. Padding is id 0,
    as in CLIP's own ``tokenize``.
    """

    def __init__(self, model_name='ViT-B-32'):
        from capdistill.utils.compat import patch_torchvision
        patch_torchvision()  # open_clip imports torchvision
        import open_clip
        self._tok = open_clip.get_tokenizer(model_name)
        self.bos_id = self._tok.sot_token_id
        self.eos_id = self._tok.eot_token_id

    @property
    def vocab_size(self):
        return len(self._tok.encoder)

    def tokens(self):
        return sorted(self._tok.encoder, key=self._tok.encoder.get)

    def encode(self, text):
        return self._tok.encode(text)

    def decode(self, ids):
        return self._tok.decode(self.strip(ids)).strip()
