#!/usr/bin/env bash
# Training speed: ms per optimiser step for every stage of FSRCNN, CARN and SRResNet (original network,
# PCSR stage 0 and stage 1), batch 16, all 16,384 query pixels of a 128x128 crop and the quick profile's
# 1,024, the stage modules built from the composed training configs (--pcsr-model pcsr_routed adds the
# stage of U_1 alone after stage 1). DEVICE=cuda times on the GPU
# (default cpu); extra arguments go to the module (--steps, --warmup, --threads, --precision bf16-mixed,
# --backbones); TAG is appended to the JSON name.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -x .venv/bin/python ] || make install
DEVICE=${DEVICE:-cpu}
OUT=results/train_speed
mkdir -p "$OUT"
.venv/bin/python experiments/train_speed.py --device "$DEVICE" --json "$OUT/$DEVICE${TAG:-}.json" "$@"
