"""``dict(type='ExportedStudent', path=...)``: an exported student as a model config."""
from capdistill.registry import MODELS


@MODELS.register_module(name='ExportedStudent')
def build_exported_student(path, device='cpu'):
    """Build the captioner of a ``tools/export_student.py`` export (safetensors + json).

    Lets the Runner (``tools/test.py``) evaluate an export: set ``model =
    dict(type='ExportedStudent', path='DIR')`` and ``load_from = None``; the weights come
    from the safetensors file, nothing is unpickled.
    """
    from capdistill.models.export_format import load_exported_student
    return load_exported_student(path, device)
