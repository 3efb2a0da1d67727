#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian 12 machine (idempotent).
set -euo pipefail
venv=${1:-.venv}
apt_packages=${2:-"python3-qgis python3-venv qgis"}

missing=()
for p in $apt_packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing[*]} from apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "setup: these Debian packages are missing; run as root:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  # --system-site-packages so that Debian's PyQGIS is importable from the venv.
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade "pip>=24"
"$venv/bin/python" -m pip install -q -c constraints.txt -r requirements.in
"$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
# PyQt6 from PyPI, in a venv of its own, only for `make lint`'s Qt6 check (scripts/check_qt6.py):
# QGIS and the plugin never import it.
qt6_venv=${3:-.venv-qt6}
if [ ! -x "$qt6_venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$qt6_venv"
fi
"$qt6_venv/bin/python" -m pip install -q -c constraints.txt PyQt6 PyQt6-Qt6 PyQt6-sip
"$venv/bin/python" - <<'PY'
import numpy, qgis.core, rasterio, torch, transformers
print(f"setup: numpy {numpy.__version__}, QGIS {qgis.core.Qgis.QGIS_VERSION}, rasterio {rasterio.__version__}, "
      f"torch {torch.__version__}, transformers {transformers.__version__}")
PY
