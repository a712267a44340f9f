"""What a model needs from its training batches, checked before a term silently vanishes.

A model (or a loss) declares ``required_batch_keys()``: batch key -> who needs it.
:func:`check_batch_keys` raises :class:`MissingBatchKeyError` at the first batch that
lacks one, naming the config key that makes the dataset provide it. ``'grade'`` is
the marker of a dataset with caption grades (``dataset.grade=...``): without it every
caption weight is 1 and a quality-weighted term is plain cross-entropy.
"""


class ModelConfigError(ValueError):
    """A model config that cannot train as written."""


def check_transformer_shape(owner, embed_dim, num_heads, depth):
    """Raise :class:`ModelConfigError` unless ``owner`` (a transformer stack) can be built
    and run with these sizes (torch would fail at the first step, deep in attention)."""
    from capdistill.utils.values import check_int
    for name, value in (('embed_dim', embed_dim), ('num_heads', num_heads), ('depth', depth)):
        check_int(f'{owner} {name}', value, 1, ModelConfigError)
    if embed_dim % num_heads:
        raise ModelConfigError(f'{owner} embed_dim {embed_dim} is not divisible by num_heads '
                               f'{num_heads} (each head takes embed_dim / num_heads channels).')


class MissingBatchKeyError(ModelConfigError):
    """A loss term needs a batch entry the training data does not provide."""


_CONCEPTS = 'train_dataloader.dataset.concepts=dict(max_objects=3, max_actions=3)'
KEY_HINTS = dict(
    obj_tokens=_CONCEPTS, act_tokens=_CONCEPTS, obj_words=_CONCEPTS, act_words=_CONCEPTS,
    grade="train_dataloader.dataset.grade='tfidf' (or 'consensus')")


def merge_requirements(*parts):
    """One ``key -> who`` dict from several (who lists joined)."""
    out = {}
    for part in parts:
        for key, who in (part or {}).items():
            out[key] = who if key not in out or who in out[key] else f'{out[key]}, {who}'
    return out


def check_batch_keys(required, data_samples, inputs=None):
    """Raise :class:`MissingBatchKeyError` for the first key of ``required`` (key -> who
    needs it) that neither ``data_samples`` nor ``inputs`` carries."""
    for key, who in (required or {}).items():
        if key in (data_samples or {}) or key in (inputs or {}):
            continue
        hint = KEY_HINTS.get(key, f'the dataset pipeline so that it emits {key!r}')
        raise MissingBatchKeyError(
            f'{who} needs the batch key {key!r}, which the training batches do not carry '
            f'(so the term would silently vanish); set {hint}, or remove the term.')
