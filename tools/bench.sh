#!/usr/bin/env bash
# make bench: every benchmark, side by side with its anchor. Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 tools/bench.py "$@"
