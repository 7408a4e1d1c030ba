#!/usr/bin/env bash
# CPU latency of routed PCSR vs the original network, side by side in one run per size, through the
# defaults users get: fp32, the memory format `pcsr upscale` picks (--memory-format auto), the machine's
# threads, render blocks and refinement bands sized from its L2 cache.
# REPEATS / REFERENCE_REPEATS / SIZES / FAMILIES trim a run on a busy machine.
source "$(dirname "$0")/common.sh"
OUT=results/speed/cpu
REPEATS=${REPEATS:-5}
REFERENCE_REPEATS=${REFERENCE_REPEATS:-3}
SIZES=${SIZES:-"1080x1920 2160x3840"}
FAMILIES=${FAMILIES:-"carn fsrcnn"}
mkdir -p "$OUT"
for size in $SIZES; do
  for family in $FAMILIES; do
    pcsr bench --pcsr-ckpt $CKPTS/$family-pcsr-phase1.ckpt --original-ckpt $CKPTS/$family-x4.ckpt --hr-size $size \
      --k 0 1 --repeats $REPEATS --reference-repeats $REFERENCE_REPEATS --profile --json $OUT/$family-$size.json
  done
done
