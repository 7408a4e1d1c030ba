#!/usr/bin/env bash
# An 8K output (7680x4320) from a 1920x1080 LR photo mosaic: tiled backbone, peak memory reported.
source "$(dirname "$0")/common.sh"
DEVICE=${DEVICE:-cpu}
OUT=results/huge
mkdir -p "$OUT"
python - <<'PY'
from pcsr_lightning.bench.inputs import photo_mosaic
from pcsr_lightning.data.bicubic import downscale
from pcsr_lightning.io.images import write_png
write_png(downscale(photo_mosaic((4320, 7680)), 4).clamp(0, 1), "results/huge/lr_1080x1920.png")
PY
/usr/bin/time -v pcsr upscale --ckpt $CKPTS/carn-pcsr-phase1.ckpt --input $OUT/lr_1080x1920.png --output $OUT/sr \
  --device "$DEVICE" --tile 256 --report-memory 2>&1 | tee $OUT/upscale-8k.log | grep -E "lr_1080|peak|Maximum resident|Elapsed"
