#!/usr/bin/env bash
# Usage: bash tools/dist_train.sh CONFIG NPROC_PER_NODE [train.py args]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on every node.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: bash tools/dist_train.sh CONFIG NPROC_PER_NODE [train.py args]" >&2
    exit 2
fi
if [ ! -f "$1" ]; then  # one line here rather than one per process and torchrun's report
    echo "error: Config file not found: $1" >&2
    exit 1
fi
exec bash "$(dirname "$0")/dist_run.sh" train.py "$2" "$1" "${@:3}"
