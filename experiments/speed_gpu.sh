#!/usr/bin/env bash
# GPU latency (e.g. an H100): fp32 and bf16, the default memory format (--memory-format auto), both models
# in the same precision; then CARN at 2K with the other layout forced, to check the automatic choice; then
# the flat-tile gate at 4K.
source "$(dirname "$0")/common.sh"
OUT=results/speed/gpu
mkdir -p "$OUT"
for size in 1080x1920 2160x3840; do
  for precision in fp32 bf16; do
    pcsr bench --pcsr-ckpt $CKPTS/carn-pcsr-phase1.ckpt --original-ckpt $CKPTS/carn-x4.ckpt --hr-size $size \
      --device cuda --precision $precision --k 0 1 --repeats 5 --profile --json $OUT/carn-$size-$precision.json
    pcsr bench --pcsr-ckpt $CKPTS/fsrcnn-pcsr-phase1.ckpt --original-ckpt $CKPTS/fsrcnn-x4.ckpt --hr-size $size \
      --device cuda --precision $precision --k 0 1 --repeats 5 --profile --json $OUT/fsrcnn-$size-$precision.json
  done
done
for precision in fp32 bf16; do
  pcsr bench --pcsr-ckpt $CKPTS/carn-pcsr-phase1.ckpt --original-ckpt $CKPTS/carn-x4.ckpt --hr-size 1080x1920 \
    --device cuda --precision $precision --memory-format contiguous --k 0 --repeats 5 --no-reference \
    --json $OUT/carn-1080x1920-$precision-contiguous.json
done
# The flat-tile gate on the GPU: threshold 0 (the cost of tiling alone) and CARN's validation threshold,
# the exact halo and halo 8, at 4K, beside PCSR in the same rounds (docs/performance.md, "The flat-tile gate").
pcsr bench --pcsr-ckpt $CKPTS/carn-pcsr-phase1.ckpt --original-ckpt $CKPTS/carn-x4.ckpt --hr-size 2160x3840 \
  --device cuda --precision fp32 --k 0 --skip-flat 0 0.045 --skip-halo rf 8 --repeats 5 --no-ends \
  --json $OUT/carn-2160x3840-fp32-skip-flat.json
