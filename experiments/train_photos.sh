#!/usr/bin/env bash
# Train FSRCNN (then CARN) original and PCSR with the same budget on a photo folder, then sweep k on
# held-out photos. Usage: experiments/train_photos.sh TRAIN_DIR VAL_DIR [trainer=gpu] [Hydra overrides]
# BACKBONES="fsrcnn" runs only some of the backbones (default: fsrcnn carn).
source "$(dirname "$0")/common.sh"
TRAIN=${1:?usage: experiments/train_photos.sh TRAIN_DIR VAL_DIR [overrides]}
VAL=${2:?usage: experiments/train_photos.sh TRAIN_DIR VAL_DIR [overrides]}
shift 2
RUNS=results/train_photos
for backbone in ${BACKBONES:-fsrcnn carn}; do
  pcsr-train -m experiment=${backbone}_original,${backbone}_pcsr data=image_folder data.train.path="$TRAIN" \
    data.val.path="$VAL" "$@" hydra.sweep.dir=$RUNS/$backbone
  original=$(ls $RUNS/$backbone/*_${backbone}_original/final.ckpt)
  pcsr=$(ls $RUNS/$backbone/*_${backbone}_pcsr/final.ckpt)
  pcsr eval --ckpt "$pcsr" --original-ckpt "$original" --hr-dir "$VAL" --k -0.5 0 0.5 1 2 --ends --bicubic \
    --summary $RUNS/$backbone/summary.csv --plot $RUNS/$backbone/curve.png
done
