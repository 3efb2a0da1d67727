#!/usr/bin/env bash
# Builds dist/paligemma_qgis-<VERSION>.zip, the file users install with
# "Plugins > Manage and Install Plugins > Install from ZIP" (and the official repository takes).
#
# Layout: one top folder paligemma_qgis/ = the package code + metadata.txt + resources/ +
# LICENSE (when present) + requirements-worker.txt / requirements-model.txt /
# requirements-region.txt (what the worker Python needs for every engine / for the PaliGemma
# engine / to send runs to a Ray cluster).
# Never shipped: tests, __pycache__, *.pyc. The zip is written to a temp file and moved into
# place, so an interrupted build never leaves a half zip behind.
#
# Usage: scripts/package.sh VERSION [DIST_DIR]     (make package passes metadata.txt's version)
set -euo pipefail

version=${1:?usage: scripts/package.sh VERSION [DIST_DIR]}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dist=${2:-$root/dist}
name=paligemma_qgis

meta_version=$(sed -n 's/^version=//p' "$root/metadata.txt" | tr -d '[:space:]')
if [ "$version" != "$meta_version" ]; then
  echo "package: version $version does not match metadata.txt (version=$meta_version)" >&2
  exit 1
fi
pkg_version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$root/$name/__init__.py")
if [ "$pkg_version" != "$version" ]; then
  echo "package: version $version does not match $name/__init__.py (__version__ = $pkg_version)" >&2
  exit 1
fi

stage=$(mktemp -d)
tmp_zip=
trap 'rm -rf "$stage" ${tmp_zip:+"$tmp_zip"}' EXIT
dest="$stage/$name"
mkdir -p "$dest"

# Package code: every tracked-or-not source file under the package, minus caches and tests.
(
  cd "$root/$name"
  find . -type f \
    ! -path '*/__pycache__/*' ! -name '*.pyc' ! -name '*.pyo' \
    ! -path './tests/*' ! -path '*/tests/*' ! -name 'test_*.py' ! -name '*_test.py' \
    ! -name '.*' ! -name '*.orig' ! -name '*.rej' -print0 |
    while IFS= read -r -d '' f; do
      mkdir -p "$dest/$(dirname "$f")"
      cp -p "$f" "$dest/$f"
    done
)

cp -p "$root/metadata.txt" "$dest/metadata.txt"
mkdir -p "$dest/resources"
cp -p "$root/resources/icon.svg" "$dest/resources/icon.svg"
for f in LICENSE LICENSE.txt LICENSE.md COPYING; do
  if [ -f "$root/$f" ]; then cp -p "$root/$f" "$dest/$f"; fi
done

# What the worker Python needs, in the groups the plugin installs apart (requirements.in
# sections): every engine (requirements-worker.txt), the PaliGemma engine (requirements-model.txt),
# runs sent to Ray (requirements-region.txt).
section() {
  awk -v want="$1" '/^# [a-z ]+:/ {on = (index($0, "# " want ":") == 1); next} on && !/^#/ && NF {print}' \
    "$root/requirements.in"
}
section worker >"$dest/requirements-worker.txt"
section model >"$dest/requirements-model.txt"
section region >"$dest/requirements-region.txt"
for f in requirements-worker.txt requirements-model.txt requirements-region.txt; do
  if [ ! -s "$dest/$f" ]; then
    echo "package: requirements.in has no section for $f (its '# worker:' / '# model:' / '# region:' headers)" >&2
    exit 1
  fi
done

# Metadata must name an icon that is in the zip.
icon=$(sed -n 's/^icon=//p' "$dest/metadata.txt" | tr -d '[:space:]')
if [ -n "$icon" ] && [ ! -f "$dest/$icon" ]; then
  echo "package: metadata.txt names icon=$icon but it is not in the package" >&2
  exit 1
fi

mkdir -p "$dist"
zip_path="$dist/$name-$version.zip"
tmp_zip=$(mktemp "$dist/.$name-$version.zip.XXXXXX")
rm -f "$tmp_zip"
(cd "$stage" && TZ=UTC find "$name" -exec touch -d '1980-01-02 00:00:00' {} + && \
  find "$name" -type f | LC_ALL=C sort | zip -q -X -@ "$tmp_zip")
mv -f "$tmp_zip" "$zip_path"
echo "package: $zip_path ($(du -h "$zip_path" | cut -f1), $(unzip -Z1 "$zip_path" | wc -l) files)"
