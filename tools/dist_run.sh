#!/usr/bin/env bash
# Usage: bash tools/dist_run.sh SCRIPT NPROC_PER_NODE [script args]
# Runs tools/SCRIPT under torchrun with --launcher pytorch (capdistill.utils.launch: a
# failed run ends in one line); shared by dist_train.sh and dist_test.sh.
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on every node.
# Python: $PYTHON, else the active virtualenv's, else this checkout's .venv (tools/_python.sh).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: bash tools/dist_run.sh SCRIPT NPROC_PER_NODE [script args]" >&2
    exit 2
fi
SCRIPT=$1
NPROC=$2
HERE=$(cd "$(dirname "$0")" && pwd)
case "$NPROC" in
    '' | *[!0-9]* | 0)
        echo "error: NPROC_PER_NODE must be a positive integer (processes per node), got '$NPROC'" >&2
        exit 2 ;;
esac
if [ ! -f "$HERE/$SCRIPT" ]; then
    echo "error: no tools/$SCRIPT" >&2
    exit 2
fi
source "$HERE/_python.sh"
PYTHONPATH="$HERE/..:${PYTHONPATH:-}" \
"$PYTHON" -m capdistill.utils.launch \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" "$HERE/$SCRIPT" "${@:3}" --launcher pytorch
