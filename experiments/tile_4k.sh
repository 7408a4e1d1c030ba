#!/usr/bin/env bash
# One large image through `pcsr upscale`, the backbone on the whole LR image (--tile 0) against LR tiles
# (--tile $TILE), each run a fresh process under /usr/bin/time, the two alternating for ROUNDS rounds:
# wall, user and system seconds and peak RSS per run, and whether the two PNGs are identical.
# HR: a photo (default: a 2160x3840 photo mosaic), shrunk x4 by MATLAB-style bicubic to make the LR input.
# TILE (256), ROUNDS (3), THREADS (2), CKPT (the released CARN-PCSR), K (0).
source "$(dirname "$0")/common.sh"
OUT=results/tile_4k
TILE=${TILE:-256}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
CKPT=${CKPT:-$CKPTS/carn-pcsr-phase1.ckpt}
K=${K:-0}
export OMP_NUM_THREADS=$THREADS
mkdir -p "$OUT"
HR=${HR:-} python - "$OUT/lr.png" <<'PY'
import os
import sys

from pcsr_lightning.data.bicubic import downscale
from pcsr_lightning.bench.inputs import photo_mosaic
from pcsr_lightning.io.images import read_image, write_png

hr = read_image(os.environ["HR"]) if os.environ["HR"] else photo_mosaic((2160, 3840))
hr = hr[:, : hr.shape[1] // 4 * 4, : hr.shape[2] // 4 * 4]
write_png(downscale(hr, 4).clamp(0, 1), sys.argv[1])
print(f"LR {sys.argv[1]}: {hr.shape[1] // 4}x{hr.shape[2] // 4} (x4: {hr.shape[1]}x{hr.shape[2]})")
PY
lscpu | grep -E "^Model name|^CPU family|^Model:" | tr -s ' '
for round in $(seq "$ROUNDS"); do
  for tile in 0 "$TILE"; do
    rm -rf "$OUT/sr_$tile"
    /usr/bin/time -f "round $round, --tile $tile: wall %e s, user %U s, system %S s, peak RSS %M KiB" \
      pcsr upscale --ckpt "$CKPT" --input "$OUT/lr.png" --output "$OUT/sr_$tile" --tile "$tile" --k "$K" \
      > /dev/null
  done
done
if cmp -s "$OUT/sr_0/lr.png" "$OUT/sr_$TILE/lr.png"; then echo "the PNGs are identical"; else echo "the PNGs DIFFER"; fi
