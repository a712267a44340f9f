#!/usr/bin/env bash
# Usage: bash tools/dist_test.sh CONFIG CHECKPOINT NPROC_PER_NODE [test.py args]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on every node.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: bash tools/dist_test.sh CONFIG CHECKPOINT NPROC_PER_NODE [test.py args]" >&2
    exit 2
fi
for f in "$1" "$2"; do  # one line here rather than one per process and torchrun's report
    if [ ! -f "$f" ]; then
        echo "error: not found: $f" >&2
        exit 1
    fi
done
exec bash "$(dirname "$0")/dist_run.sh" test.py "$3" "$1" "$2" "${@:4}"
