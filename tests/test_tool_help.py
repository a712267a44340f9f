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
