# Sourced by the launch scripts (dist_run.sh, slurm_train.sh): sets PYTHON to $PYTHON if
# given, else the active virtualenv's python, else this checkout's .venv (made by
# tools/setup_env.sh), else python on PATH.
if [ -z "${PYTHON:-}" ]; then
    _checkout=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$_checkout/.venv/bin/python" ]; then
        PYTHON="$_checkout/.venv/bin/python"
    else
        PYTHON=python
    fi
fi
