#!/usr/bin/env bash
# CPU latency of routed PCSR vs the original network, side by side in one run per size, through the
# defaults users get: fp32, the memory format `pcsr upscale` picks (--memory-format auto), the machine's
# threads, render blocks and refinement bands sized from its L2 cache.
source "$(dirname "$0")/common.sh"
# REPEATS / REFERENCE_REPEATS / SIZES trim a run on a busy machine (defaults: 5, 3, 2K and 4K).
OUT=results/speed/cpu
REPEATS=${REPEATS:-5}
REFERENCE_REPEATS=${REFERENCE_REPEATS:-3}
SIZES=${SIZES:-"1080x1920 2160x3840"}
mkdir -p "$OUT"
for size in $SIZES; do
  pcsr bench --pcsr-ckpt $CKPTS/carn-pcsr-phase1.ckpt --original-ckpt $CKPTS/carn-x4.ckpt --hr-size $size \
    --k 0 1 --repeats $REPEATS --reference-repeats $REFERENCE_REPEATS --profile --json $OUT/carn-$size.json
  pcsr bench --pcsr-ckpt $CKPTS/fsrcnn-pcsr-phase1.ckpt --original-ckpt $CKPTS/fsrcnn-x4.ckpt --hr-size $size \
    --k 0 1 --repeats $REPEATS --reference-repeats $REFERENCE_REPEATS --profile --json $OUT/fsrcnn-$size.json
done
