"""Reading exported students: a ``<name>.safetensors`` + ``<name>.json`` pair.

The format (written by :func:`capdistill.apis.export.export_student`, described in that
module) is read here, below the model registry, so that a model config
(``dict(type='ExportedStudent', path=...)``) can load an export without reaching up into
``capdistill.apis``. Nothing is unpickled.
"""
import glob
import json
import os.path as osp

from mmengine.registry import DefaultScope

from capdistill.registry import MODELS
from capdistill.utils import CheckpointError, load_matching_state

FORMAT = 'capdistill-student'
VERSION = 2


def build_model(model_cfg):
    """Build a captioner config in the capdistill scope."""
    with DefaultScope.overwrite_default_scope('capdistill'):
        return MODELS.build(model_cfg)


def read_export_json(path):
    """The json of an export (folder, either file), checked to be one."""
    st_path, js_path = locate_export(path)
    try:
        with open(js_path, encoding='utf-8') as f:
            meta = json.load(f)
    except ValueError as exc:
        raise CheckpointError(f'{js_path} is not valid json ({exc})') from None
    if not isinstance(meta, dict) or meta.get('format') != FORMAT:
        fmt = meta.get('format') if isinstance(meta, dict) else None
        raise CheckpointError(f'{js_path} is not a capdistill student export '
                              f'(format={fmt!r}).')
    return st_path, js_path, meta


def locate_export(path):
    """``(safetensors, json)`` for a folder, either file, or a shared stem."""
    path = str(path)
    if osp.isdir(path):
        found = sorted(glob.glob(osp.join(path, '*.safetensors')))
        if len(found) != 1:
            raise CheckpointError(f'{path} holds {len(found)} .safetensors files; give the '
                                  'file itself.')
        path = found[0]
    stem = osp.splitext(path)[0] if path.endswith(('.safetensors', '.json')) else path
    st_path, js_path = stem + '.safetensors', stem + '.json'
    for p, what in ((st_path, 'weights'), (js_path, 'model config')):
        if not osp.isfile(p):
            raise CheckpointError(f'Exported student {what} not found: {p} (an export is a '
                                  '<name>.safetensors plus <name>.json pair).')
    return st_path, js_path


def load_exported_student(path, device='cpu'):
    """Build an exported student from its json and load its safetensors weights.

    ``path``: the export folder, the ``.safetensors`` or the ``.json`` file. Nothing is
    unpickled (safetensors only). Returns the captioner in eval mode, carrying the
    export's inference settings: ``frame_encoder`` (config dict or None),
    ``num_frames`` and ``decode_cfg`` (the json's ``decode``).
    """
    from safetensors.torch import load_file
    st_path, js_path, meta = read_export_json(path)
    model = build_model(meta['model'])
    load_matching_state(model, load_file(st_path), f'Exported student {st_path}')
    model.frame_encoder = meta.get('frame_encoder')
    model.num_frames = meta.get('num_frames')
    decode = dict(meta.get('decode') or {})
    decode.pop('max_len', None)  # a model setting (model.max_len), not a decode argument
    if decode and hasattr(model, 'decode_cfg'):
        from capdistill.models.captioners.decoding import check_decode_settings
        check_decode_settings(decode, model.tokenizer.vocab_size, source=js_path)
        model.decode_cfg.update(decode)
    return model.to(device).eval()


def is_export(path):
    """Whether ``path`` names an exported student (folder with one, or either file)."""
    if path is None:
        return False
    path = str(path)
    if path.endswith('.safetensors'):
        return True
    if path.endswith('.json') and osp.isfile(path):
        return True
    return osp.isdir(path) and bool(glob.glob(osp.join(path, '*.safetensors')))


__all__ = ['FORMAT', 'VERSION', 'build_model', 'read_export_json', 'locate_export',
           'load_exported_student', 'is_export']
