#!/usr/bin/env bash
# GPU latency (e.g. an H100): fp32 and bf16, the default memory format (--memory-format auto), both models
# in the same precision; then CARN at 2K with the other layout forced, to check the automatic choice.
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
