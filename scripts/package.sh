#!/usr/bin/env bash
# Builds dist/paligemma_qgis.<VERSION>.zip from the files git tracks: see scripts/package.py.
# Usage: scripts/package.sh VERSION [DIST_DIR]     (make package passes metadata.txt's version)
set -euo pipefail
exec python3 "$(dirname "${BASH_SOURCE[0]}")/package.py" "$@"
