"""Package layering: ``capdistill.models`` and ``capdistill.datasets`` import nothing from
``capdistill.apis`` (the API sits on top; a model config must not reach up into it)."""
import ast
import os
import os.path as osp

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
LOWER = ('capdistill/models', 'capdistill/datasets')
FORBIDDEN = 'capdistill.apis'


def _module_name(root, path):
    rel = osp.relpath(path, root)[:-3].replace(os.sep, '.')
    return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def imported_modules(path, root):
    """Every module a file imports (relative imports resolved), at any nesting depth."""
    name = _module_name(root, path)
    package = name if path.endswith('__init__.py') else name.rpartition('.')[0]
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split('.')
                base = '.'.join(parts[:len(parts) - node.level + 1])
                module = f'{base}.{node.module}' if node.module else base
            else:
                module = node.module
            # ``from capdistill import apis`` names the package through its alias
            found += [(node.lineno, module)] + [(node.lineno, f'{module}.{a.name}')
                                                for a in node.names]
    return found


def upward_imports(root, folders=LOWER, forbidden=FORBIDDEN):
    """``path:line imports module`` for every import of ``forbidden`` under ``folders``."""
    bad = {}
    for folder in folders:
        for dirpath, _, files in os.walk(osp.join(root, folder)):
            for fn in sorted(files):
                if not fn.endswith('.py'):
                    continue
                path = osp.join(dirpath, fn)
                for line, module in imported_modules(path, root):
                    if module == forbidden or module.startswith(forbidden + '.'):
                        bad.setdefault(f'{osp.relpath(path, root)}:{line}', module)
    return [f'{where} imports {module}' for where, module in sorted(bad.items())]


def test_models_and_datasets_do_not_import_apis():
    bad = upward_imports(REPO)
    assert not bad, 'models/ and datasets/ must not import capdistill.apis:\n' + '\n'.join(bad)


def test_the_scan_finds_every_import_form(tmp_path):
    """A planted upward import in each spelling is reported (the check above can fail)."""
    pkg = tmp_path / 'capdistill'
    for sub in ('apis', 'models/distillers', 'datasets/demo'):
        (pkg / sub).mkdir(parents=True)
    for init in ('', 'apis', 'models', 'models/distillers', 'datasets', 'datasets/demo'):
        (pkg / init / '__init__.py').write_text('')
    (pkg / 'models/distillers/a.py').write_text(
        'def f():\n    from capdistill.apis.export import load_exported_student\n')
    (pkg / 'models/distillers/b.py').write_text('from ...apis import export\n')
    (pkg / 'datasets/demo/c.py').write_text('import capdistill.apis.extraction as x\n')
    (pkg / 'datasets/d.py').write_text('from capdistill import apis\n')
    (pkg / 'datasets/fine.py').write_text('from capdistill.models import export_format\n'
                                          'from ..utils import files\n')
    bad = upward_imports(str(tmp_path))
    assert [b.split(' ')[0] for b in bad] == [
        'capdistill/datasets/d.py:1', 'capdistill/datasets/demo/c.py:1',
        'capdistill/models/distillers/a.py:2', 'capdistill/models/distillers/b.py:1']
    assert bad[3].endswith('imports capdistill.apis') or 'apis.export' in bad[3]
    assert bad[2].endswith('imports capdistill.apis.export')
