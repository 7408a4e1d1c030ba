#!/usr/bin/env bash
# Keep the released PCSR's backbone B and heavy upsampler U_0, re-train stage 1 (U_1 and the classifier,
# from scratch, with the paper's loss) on a photo folder, then sweep k for the released and the re-trained
# model on held-out photos and compare the curves at equal GFLOPs.
# Usage: experiments/retrain_classifier.sh TRAIN_DIR HELDOUT_DIR [Hydra overrides]
# The training run is the recipe conf/experiment/retrain_<backbone>.yaml (`pcsr-train
# experiment=retrain_fsrcnn ... --cfg job` shows it): 17,000 steps of the paper's stage 1 (U_1 and C in the
# soft mixture), then 5,000 steps of U_1 alone with C frozen (stage1_routed, not in the paper), quick
# profile with batch 16 and 4,096 query pixels per crop, Adam at lr 3e-3 with the classifier at 0.3333 x
# that, cosine to 1e-7 over each stage. These variables, when set, override single values of the recipe:
#   STEPS             steps of the paper's stage 1 (profile.steps.stage)
#   ROUTED_STEPS      steps of U_1 alone (model.routed_steps); 0: the paper's stage only
#   QUERIES           query pixels per crop (profile.queries; null: all of them)
#   LR                Adam's learning rate (optimizer.lr)
#   CLASSIFIER_LR_SCALE  the classifier's learning rate relative to LR in stage 1; 1: the same as U_1's
#   BACKBONES=fsrcnn  also carn: BACKBONES="fsrcnn carn"
#   RUNS=results/retrain_classifier  an interrupted run left there is resumed: delete it to change settings
# Hydra overrides after the folders go last (e.g. seed=2).
# Then two swapped models say which part a gap comes from: the released model with only the re-trained
# classifier (retrained_C_only) and with only the re-trained U_1 (retrained_U1_only).
# Writes results/retrain_classifier/<backbone>/{released,retrained,retrained_C_only,retrained_U1_only}.csv,
# compare.md, curves.png.
source "$(dirname "$0")/common.sh"
usage="usage: experiments/retrain_classifier.sh TRAIN_DIR HELDOUT_DIR [overrides]"
TRAIN=$(realpath "${1:?$usage}")
HELDOUT=$(realpath "${2:?$usage}")
shift 2
settings=()
[ -n "${STEPS:-}" ] && settings+=(profile.steps.stage="$STEPS")
if [ -n "${ROUTED_STEPS:-}" ]; then
  if [ "$ROUTED_STEPS" = 0 ]; then
    settings+=(model.stages.stage_j_routed=null)
  elif [ "$ROUTED_STEPS" -gt 0 ] 2>/dev/null; then
    settings+=(model.routed_steps="$ROUTED_STEPS")
  else
    echo "ROUTED_STEPS must be a number of steps (0: none), got '$ROUTED_STEPS'" >&2
    exit 2
  fi
fi
if [ "${CLASSIFIER_LR_SCALE:-}" = 1 ]; then
  settings+=('~model.stages.stage_j.module.lr_scale')
elif [ -n "${CLASSIFIER_LR_SCALE:-}" ]; then
  settings+=(model.stages.stage_j.module.lr_scale.classifier="$CLASSIFIER_LR_SCALE")
fi
[ -n "${QUERIES:-}" ] && settings+=(profile.queries="$QUERIES")
[ -n "${LR:-}" ] && settings+=(optimizer.lr="$LR")
RUNS=${RUNS:-results/retrain_classifier}
for backbone in ${BACKBONES:-fsrcnn}; do
  released="$PWD/$CKPTS/${backbone}-pcsr-phase1.ckpt"
  run="$RUNS/$backbone"
  resume=false
  [ -f "$run/manifest.json" ] && resume=true
  start=$(date +%s)
  pcsr-train experiment=retrain_$backbone data.train.path="$TRAIN" data.val.path="$HELDOUT" \
    init.checkpoint="$released" "${settings[@]}" resume=$resume hydra.run.dir="$run" "$@"
  echo "$backbone: experiment=retrain_$backbone ${settings[*]} $*, trained in $(( $(date +%s) - start )) s (wall clock, this run)"
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
