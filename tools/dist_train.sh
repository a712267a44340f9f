#!/usr/bin/env bash
# Usage: bash tools/dist_train.sh CONFIG NPROC_PER_NODE [train.py args]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on every node.
set -euo pipefail
exec bash "$(dirname "$0")/dist_run.sh" train.py "$2" "$1" "${@:3}"
