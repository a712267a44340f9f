"""The ``java`` and ``gpu`` markers: a missing runtime skips locally and fails under CI."""
import os
import sys

import pytest

from conftest import run_tool

JAVA_TEST = 'tests/test_caption_metric.py::test_score_captions_equals_pycocoevalcap'


@pytest.fixture
def path_without_java(tmp_path):
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    os.symlink(sys.executable, bindir / 'python')
    return str(bindir)


@pytest.mark.parametrize('ci', ['true', ''])
def test_java_test_without_java(ci, path_without_java):
    res = run_tool([sys.executable, '-m', 'pytest', '-q', '-n', '0', '-p', 'no:cacheprovider',
                    JAVA_TEST],
                   env=dict(PATH=path_without_java, CI=ci))
    out = res.stdout + res.stderr
    if ci:
        assert res.returncode == 1, out[-2000:]  # reported as an error in setup
        assert '1 error' in out and 'needs a Java runtime' in out and 'CI=true' in out
    else:
        assert res.returncode == 0, out[-2000:]
        assert '1 skipped' in out
