"""Caption tokenisers behind one interface.

Every tokenizer maps text to ids without special tokens (``encode``) and back
(``decode``), and exposes ``pad_id``, ``bos_id``, ``eos_id`` and ``vocab_size``.
``encode_padded`` adds BOS/EOS and pads to a fixed length, as the datasets need.
``WordTokenizer`` and ``CompactTokenizer`` (a base vocabulary pruned to the training
captions' tokens) are built once from the training captions and saved beside the data.
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


def training_captions(ann_file, split_file=None, allow_pickle=False):
    """Every caption of the videos in ``split_file`` (all videos without one)."""
    from .annotations import load_captions, load_split
    captions = load_captions(ann_file)
    ids = load_split(split_file, allow_pickle) if split_file else list(captions)
    return [c for vid in ids for c in captions.get(vid, [])]


def vocab_meta(min_count, build_from):
    """How a vocabulary is built: settings plus the captions' content hash."""
    from .annotations import file_hash
    meta = dict(min_count=min_count, **build_from)
    if os.path.isfile(build_from['ann_file']):
        meta['ann_hash'] = file_hash(build_from['ann_file'])
    return meta


def check_vocab_meta(vocab_file, wanted):
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


def write_json_atomic(path, obj, meta=None):
    """Write ``obj`` to ``path`` atomically (several processes may build it at once);
    ``meta`` goes to ``<path>.meta.json``."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=0)
    if meta is not None:
        with open(tmp + '.meta', 'w') as f:
            json.dump(meta, f)
        os.replace(tmp + '.meta', path + '.meta.json')
    os.replace(tmp, path)


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
                built = self.build(training_captions(**build_from), min_count)
                built.save(vocab_file, meta=vocab_meta(min_count, build_from))
            elif build_from is not None:
                check_vocab_meta(vocab_file, vocab_meta(min_count, build_from))
            with open(vocab_file) as f:
                words = json.load(f)
        self.itos = list(self.specials) + list(words)
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, captions, min_count=1):
        """A tokenizer over the words seen at least ``min_count`` times."""
        counts = collections.Counter(w for c in captions for w in split_words(c))
        words = sorted((w for w, n in counts.items() if n >= min_count),
                       key=lambda w: (-counts[w], w))
        return cls(words=words)

    def save(self, path, meta=None):
        """Write the vocabulary atomically; ``meta`` (how it was built) goes beside it."""
        write_json_atomic(path, self.itos[len(self.specials):], meta)

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
        self.model_name = model_name
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

    def byte_ids(self):
        """The byte-level tokens (one character, with and without ``</w>``): any text
        can be written with these alone. Also the few tokens (about 60) whose spelling
        would need the single ``!``, which is id 0, the padding id: a caption holding
        it would lose that character when decoded."""
        from open_clip.tokenizer import bytes_to_unicode
        chars = list(bytes_to_unicode().values())
        out = {self._tok.encoder[c] for c in chars} | {self._tok.encoder[c + '</w>']
                                                        for c in chars}
        for i in range(len(self._tok.decoder)):
            if i not in out and i not in (self.bos_id, self.eos_id) \
                    and self.pad_id in self.byte_pieces(i):
                out.add(i)
        return sorted(out)

    def byte_pieces(self, token_id):
        """``token_id`` spelled with byte-level tokens (decodes to the same text)."""
        token = self._tok.decoder[int(token_id)]
        end = token.endswith('</w>')
        chars = list(token[:-4] if end else token)
        if token in (self._tok.decoder[self.bos_id], self._tok.decoder[self.eos_id]) \
                or not chars:
            raise ValueError(f'token {token!r} has no byte-level spelling')
        pieces = chars[:-1] + [chars[-1] + '</w>' if end else chars[-1]]
        return [self._tok.encoder[p] for p in pieces]


@TOKENIZERS.register_module()
class CompactTokenizer(BaseTokenizer):
    """A base tokenizer's vocabulary pruned to the tokens of the training captions.

    Its ids are positions in a short list of base-tokenizer ids (``base_ids``): the
    base's PAD, BOS and EOS (compact ids 0, 1, 2), then every base token seen at least
    ``min_count`` times in the training captions, then (``byte_fallback``, on for BPE
    bases) the byte-level tokens, all in base-id order. ``encode`` runs the base
    tokenizer and maps its ids in; a token the captions never had (a new word at test
    time, or in a teacher's caption) is spelled with byte-level tokens, so every text
    encodes and ``decode(encode(text))`` is the base tokenizer's own text. ``decode``
    maps back and decodes with the base. A student head built on it has one row per
    compact token (initialised from the matching rows of CLIP's token embedding when
    the head loads one), and a teacher on the base vocabulary teaches it through
    :mod:`capdistill.models.distillers.vocab_map`.

    The list is built from the training captions on first use and saved to
    ``vocab_file`` with a ``.meta.json`` (settings and the annotation file's hash), as
    :class:`WordTokenizer` does: rewritten annotations or other settings are refused.

    Args:
        base (dict): the full tokenizer (``TOKENIZERS``), default CLIP's BPE.
        vocab_file (str): json written by :meth:`save` (``base``, ``base_fingerprint``,
            ``ids``).
        build_from (dict): ``dict(ann_file=..., split_file=...)`` to build a missing
            ``vocab_file`` from (and to check an existing one against).
        min_count (int): a token is kept if it occurs this often in the captions.
        byte_fallback (bool): keep the byte-level tokens (about 512 rows for CLIP's
            BPE) so unseen tokens can be spelled; without it (or for a base without
            byte tokens) an unseen token becomes the base's ``unk_id`` if it has one,
            else encoding fails naming the token.
        ids (list[int]): the base ids themselves instead of a file (exports carry them).
    """
    compact = True

    def __init__(self, base=dict(type='ClipBPETokenizer'), vocab_file=None, build_from=None,
                 min_count=1, byte_fallback=True, ids=None):
        self.base_cfg = dict(base) if isinstance(base, dict) else None
        self.base = TOKENIZERS.build(base) if isinstance(base, dict) else base
        self.byte_fallback = byte_fallback and hasattr(self.base, 'byte_pieces')
        if ids is None:
            if vocab_file is None:
                raise ValueError('CompactTokenizer needs vocab_file (or ids).')
            if not os.path.isfile(vocab_file):
                if build_from is None:
                    raise FileNotFoundError(
                        f'Compact vocabulary file not found: {vocab_file}. Give build_from='
                        'dict(ann_file=..., split_file=...) to build it from the training '
                        'captions.')
                ids = self.select(self.base, training_captions(**build_from), min_count,
                                  self.byte_fallback)
                write_json_atomic(vocab_file, dict(
                    base=type(self.base).__name__, base_fingerprint=self.base.fingerprint(),
                    ids=ids), vocab_meta(min_count, build_from))
            elif build_from is not None:
                check_vocab_meta(vocab_file, vocab_meta(min_count, build_from))
            ids = self._read(vocab_file)
        self.base_ids = [int(i) for i in ids]
        self._to_compact = {b: c for c, b in enumerate(self.base_ids)}
        special = [self.base.pad_id, self.base.bos_id, self.base.eos_id]
        if len(self._to_compact) != len(self.base_ids) or self.base_ids[:3] != special:
            raise ValueError('CompactTokenizer ids must be distinct and start with the base '
                             f'PAD, BOS, EOS ids {special}; rebuild the vocabulary file.')
        unk = getattr(self.base, 'unk_id', None)
        self.unk_id = self._to_compact.get(unk) if unk is not None else None

    def _read(self, vocab_file):
        from .annotations import DataError
        with open(vocab_file) as f:
            data = json.load(f)
        if not isinstance(data, dict) or not isinstance(data.get('ids'), list):
            raise DataError(f'{vocab_file} is not a compact vocabulary (a json object with '
                            '"ids"); delete it to rebuild it from the training captions.')
        if data.get('base_fingerprint') not in (None, self.base.fingerprint()):
            raise DataError(f'{vocab_file} was built over another base vocabulary than '
                            f'{type(self.base).__name__} (fingerprint '
                            f'{data["base_fingerprint"]}, here {self.base.fingerprint()}); '
                            'delete it to rebuild it.')
        return data['ids']

    @staticmethod
    def select(base, captions, min_count=1, byte_fallback=True):
        """The base ids a compact vocabulary over ``captions`` keeps, in compact order."""
        counts = collections.Counter(i for c in captions for i in base.encode(c))
        special = [base.pad_id, base.bos_id, base.eos_id]
        kept = {i for i, n in counts.items() if n >= min_count}
        if byte_fallback:
            kept.update(base.byte_ids())
        return special + sorted(kept - set(special))

    def save(self, path, meta=None):
        """Write the vocabulary (base ids) atomically; ``meta`` goes beside it."""
        write_json_atomic(path, dict(base=type(self.base).__name__,
                                     base_fingerprint=self.base.fingerprint(),
                                     ids=self.base_ids), meta)

    def standalone_config(self):
        """A config that rebuilds this tokenizer with no file (exports carry it)."""
        base = self.base_cfg or dict(type=type(self.base).__name__)
        return dict(type='CompactTokenizer', base=base, ids=list(self.base_ids),
                    byte_fallback=self.byte_fallback)

    @property
    def vocab_size(self):
        return len(self.base_ids)

    def tokens(self):
        full = self.base.tokens()
        return [full[i] for i in self.base_ids]

    def _map_in(self, base_id):
        own = self._to_compact.get(base_id)
        if own is not None:
            return [own]
        if self.byte_fallback:
            return [self._to_compact[p] for p in self.base.byte_pieces(base_id)]
        if self.unk_id is not None:
            return [self.unk_id]
        raise ValueError(f'token {self.base.tokens()[base_id]!r} is not in the compact '
                         'vocabulary; build it with byte_fallback=True.')

    def encode(self, text):
        return [c for b in self.base.encode(text) for c in self._map_in(b)]

    def decode(self, ids):
        return self.base.decode([self.base_ids[i] for i in self.strip(ids)])
