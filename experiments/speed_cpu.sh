#!/usr/bin/env bash
# CPU latency of routed PCSR vs the original network, side by side in one run per size.
# Both models get the same settings (fp32, channels_last, the machine's threads).
source "$(dirname "$0")/common.sh"
OUT=results/speed/cpu
mkdir -p "$OUT"
for size in 1080x1920 2160x3840; do
  pcsr bench --pcsr-ckpt $CKPTS/carn-pcsr-phase1.ckpt --original-ckpt $CKPTS/carn-x4.ckpt --hr-size $size \
    --k 0 1 --channels-last --repeats 5 --reference-repeats 3 --profile --json $OUT/carn-$size.json
  pcsr bench --pcsr-ckpt $CKPTS/fsrcnn-pcsr-phase1.ckpt --original-ckpt $CKPTS/fsrcnn-x4.ckpt --hr-size $size \
    --k 0 1 --channels-last --repeats 5 --reference-repeats 3 --profile --json $OUT/fsrcnn-$size.json
done
