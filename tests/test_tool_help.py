"""Every tool answers --help: argparse formats each flag's help only when asked, so a
stray '%' in a help text is a traceback that no other test reaches."""
import glob
import importlib.util
import os
import sys

import pytest

from conftest import REPO

TOOLS = sorted(glob.glob(os.path.join(REPO, 'tools', '*.py'))
               + glob.glob(os.path.join(REPO, 'tools', 'analysis', '*.py')))


@pytest.mark.parametrize('path', TOOLS, ids=lambda p: os.path.relpath(p, REPO))
def test_tool_help(path, monkeypatch, capsys):
    name = 'tool_' + os.path.relpath(path, REPO).replace(os.sep, '_')[:-3]
    spec = importlib.util.spec_from_file_location(name, path)
    tool = importlib.util.module_from_spec(spec)
    monkeypatch.syspath_prepend(os.path.dirname(path))  # tools importing their neighbours
    spec.loader.exec_module(tool)
    monkeypatch.setattr(sys, 'argv', [path, '--help'])
    with pytest.raises(SystemExit) as stop:
        tool.main()
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith('usage: ') and '--help' in out


@pytest.mark.parametrize('tool', ['tools/train.py', 'tools/test.py'])
def test_help_imports_neither_torch_nor_the_runner(tool):
    """The two everyday tools parse their arguments before torch and mmengine's Runner are
    imported, so --help and usage errors answer at once (it took ~5 s)."""
    import subprocess
    probe = ('import runpy, sys\n'
             f'sys.argv = [{tool!r}, "--help"]\n'
             'try:\n'
             f'    runpy.run_path({tool!r}, run_name="__main__")\n'
             'except SystemExit as stop:\n'
             '    assert stop.code == 0, stop.code\n'
             'print(sorted(m for m in ("torch", "mmengine.runner") if m in sys.modules))\n')
    proc = subprocess.run([sys.executable, '-c', probe], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('usage: ')
    assert proc.stdout.strip().splitlines()[-1] == '[]'
