"""``dict(type='ExportedStudent', path=...)``: an exported student as a model config."""
from capdistill.registry import MODELS


@MODELS.register_module(name='ExportedStudent')
def build_exported_student(path, device='cpu', decode=None):
    """Build the captioner of a ``tools/export_student.py`` export (safetensors + json).

    Lets the Runner (``tools/test.py``) evaluate an export: set ``model =
    dict(type='ExportedStudent', path='DIR')`` and ``load_from = None``; the weights come
    from the safetensors file, nothing is unpickled. ``decode`` (a dict) sets decoding
    settings over the export's own.
    """
    from capdistill.models.captioners.decoding import check_decode_settings
    from capdistill.models.export_format import load_exported_student
    model = load_exported_student(path, device)
    check_decode_settings(decode or {}, model.tokenizer.vocab_size, path='model.decode')
    model.decode_cfg.update(decode or {})
    return model
