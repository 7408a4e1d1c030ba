#!/usr/bin/env bash
# DIV2K on an ordinary disk: disk bytes and preparation seconds per 2040-wide image, training crops per
# second per loader worker, and the same extrapolated to DIV2K's 800 images. The images are generated
# (tiles of scikit-image's sample photos) in the published layout, so nothing needs downloading.
# IMAGES (default 4) images; ROOT (default: a temporary folder, removed afterwards); extra arguments go to
# the module (--workers N preparation processes, --batches, --queries).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -x .venv/bin/python ] || make install
IMAGES=${IMAGES:-4}
OUT=results/div2k
mkdir -p "$OUT"
if [ -z "${ROOT:-}" ]; then
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
  ROOT=$TMP/DIV2K
fi
.venv/bin/python experiments/div2k_scale.py --root "$ROOT" --images "$IMAGES" --json "$OUT/scale.json" "$@"
