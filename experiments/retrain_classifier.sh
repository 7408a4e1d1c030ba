#!/usr/bin/env bash
# Keep the released PCSR's backbone B and heavy upsampler U_0, re-train stage 1 (U_1 and the classifier,
# from scratch, with the paper's loss) on a photo folder, then sweep k for the released and the re-trained
# model on held-out photos and compare the curves at equal GFLOPs.
# Usage: experiments/retrain_classifier.sh TRAIN_DIR HELDOUT_DIR [Hydra overrides]
#   STEPS=17000       steps of the paper's stage 1 (U_1 and C in the soft mixture; quick profile, batch 16)
#   ROUTED_STEPS=5000 then U_1 alone, C frozen (model=pcsr_routed, not in the paper); 0: the paper's stage only
#                     FSRCNN: ~15 + ~3 min of training on 2 quiet CPU cores
#   QUERIES=4096      query pixels per crop (the quick profile's default is 1,024)
#   LR=3e-3           Adam's learning rate (cosine to 1e-7 over each stage; the paper's is 1e-3 for 500k steps)
#   CLASSIFIER_LR_SCALE=0.3333  the classifier's learning rate relative to LR in stage 1 (1e-3 beside U_1's 3e-3)
#                     QUERIES, LR and the scale were chosen by runs on the same split (see the README)
#   BACKBONES=fsrcnn  also carn: BACKBONES="fsrcnn carn"
#   RUNS=results/retrain_classifier  an interrupted run left there is resumed: delete it to change settings
# Then two swapped models say which part a gap comes from: the released model with only the re-trained
# classifier (retrained_C_only) and with only the re-trained U_1 (retrained_U1_only).
# Writes results/retrain_classifier/<backbone>/{released,retrained,retrained_C_only,retrained_U1_only}.csv,
# compare.md, curves.png.
source "$(dirname "$0")/common.sh"
usage="usage: experiments/retrain_classifier.sh TRAIN_DIR HELDOUT_DIR [overrides]"
TRAIN=$(realpath "${1:?$usage}")
HELDOUT=$(realpath "${2:?$usage}")
shift 2
STEPS=${STEPS:-17000}
ROUTED_STEPS=${ROUTED_STEPS:-5000}
CLASSIFIER_LR_SCALE=${CLASSIFIER_LR_SCALE:-0.3333}
if [ "$ROUTED_STEPS" = 0 ]; then
  stage=(profile.steps.stage="$STEPS")
  schedule="U_1 and C for $STEPS steps"
elif [ "$ROUTED_STEPS" -gt 0 ] 2>/dev/null; then
  stage=(model=pcsr_routed profile.steps.stage="$STEPS" model.routed_steps="$ROUTED_STEPS")
  schedule="U_1 and C for $STEPS steps, then U_1 alone for $ROUTED_STEPS"
else
  echo "ROUTED_STEPS must be a number of steps (0: none), got '$ROUTED_STEPS'" >&2
  exit 2
fi
if [ "$CLASSIFIER_LR_SCALE" != 1 ]; then
  stage+=("+model.stages.stage_j.module.lr_scale={classifier: $CLASSIFIER_LR_SCALE}")
  schedule+=" (classifier at $CLASSIFIER_LR_SCALE x the lr)"
fi
QUERIES=${QUERIES:-4096}
LR=${LR:-3e-3}
RUNS=${RUNS:-results/retrain_classifier}
for backbone in ${BACKBONES:-fsrcnn}; do
  released="$PWD/$CKPTS/${backbone}-pcsr-phase1.ckpt"
  run="$RUNS/$backbone"
  resume=false
  [ -f "$run/manifest.json" ] && resume=true
  start=$(date +%s)
  pcsr-train experiment=${backbone}_pcsr data=image_folder data.train.path="$TRAIN" data.val.path="$HELDOUT" \
    init.checkpoint="$released" 'init.stages=[stage0]' profile=quick "${stage[@]}" \
    profile.queries="$QUERIES" optimizer.lr="$LR" \
    logger=csv callbacks=none resume=$resume hydra.run.dir="$run" "$@"
  echo "$backbone: stage 1, $schedule ($QUERIES queries per crop, lr $LR), trained in $(( $(date +%s) - start )) s (wall clock, this run)"
  pcsr eval --ckpt "$released" --hr-dir "$HELDOUT" --k $RETRAIN_KS --ends --summary "$run/released.csv"
  pcsr eval --ckpt "$run/final.ckpt" --hr-dir "$HELDOUT" --k $RETRAIN_KS --ends --summary "$run/retrained.csv"
  for swapped in "retrained_C_only classifier" "retrained_U1_only upsamplers.1"; do
    read -r name part <<< "$swapped"
    pcsr swap "$released" "$run/final.ckpt" --parts "$part" --out "$run/$name.ckpt"
    pcsr eval --ckpt "$run/$name.ckpt" --hr-dir "$HELDOUT" --k $RETRAIN_KS --ends --summary "$run/$name.csv"
  done
  pcsr compare released="$run/released.csv" retrained="$run/retrained.csv" \
    retrained_C_only="$run/retrained_C_only.csv" retrained_U1_only="$run/retrained_U1_only.csv" --table "$run/compare.md" \
    --plot "$run/curves.png" --log-x --title "$backbone-PCSR x4 on $(basename "$HELDOUT"): released vs stage 1 re-trained"
done
