#!/usr/bin/env bash
# Keep the released PCSR's backbone B and heavy upsampler U_0, re-train stage 1 (U_1 and the classifier,
# from scratch, with the paper's loss) on a photo folder, then sweep k for the released and the re-trained
# model and compare the curves at equal GFLOPs.
# Usage: experiments/retrain_classifier.sh TRAIN_DIR VAL_DIR REPORT_DIR [Hydra overrides]
# Three disjoint folders, one role each: TRAIN_DIR trains; VAL_DIR is the training run's validation set and
# the only photos a setting may be chosen on (its sweeps: $RUNS/<backbone>/val/, compare_val.md); REPORT_DIR
# is swept once, for the reported numbers ($RUNS/<backbone>/report/, compare.md), and never chooses anything.
# The training run is the recipe conf/experiment/retrain_<backbone>.yaml (`pcsr-train
# experiment=retrain_fsrcnn ... --cfg job` shows it): for FSRCNN 4,250 steps of the paper's stage 1 (U_1
# and C in the soft mixture), then 20,000 steps of U_1 alone with C frozen (stage1_routed, not in the
# paper), dead hidden units drawn again every 250 steps (CARN: 4,500 + 10,000 steps); quick
# profile with batch 16 and 4,096 query pixels per crop, Adam at lr 3e-3 with the classifier at 0.3333 x
# that, cosine to 1e-7 over each stage. These variables, when set, override single values of the recipe:
#   STEPS             steps of the paper's stage 1 (profile.steps.stage)
#   ROUTED_STEPS      steps of U_1 alone (model.routed_steps); 0: the paper's stage only
#   QUERIES           query pixels per crop (profile.queries; null: all of them)
#   LR                Adam's learning rate (optimizer.lr)
#   CLASSIFIER_LR_SCALE  the classifier's learning rate relative to LR in stage 1; 1: the same as U_1's
#   BACKBONES=fsrcnn  also carn: BACKBONES="fsrcnn carn"
#   RUNS=results/retrain_classifier  an interrupted run left there is resumed: delete it to change settings
#   REFIT=1           the model to report, once every setting has been chosen on VAL_DIR: trained on TRAIN_DIR
#                     and VAL_DIR together (links in <run>/photos/), and only REPORT_DIR swept (VAL_DIR would be
#                     photos it trained on: no val/ sweeps, no compare_val.md)
# Hydra overrides after the folders go last (e.g. seed=2).
# Then two swapped models say which part a gap comes from: the released model with only the re-trained
# classifier (retrained_C_only) and with only the re-trained U_1 (retrained_U1_only).
# Writes results/retrain_classifier/<backbone>/trained.txt (each call's training time and CPU),
# {val,report}/{released,retrained,retrained_C_only,retrained_U1_only}.csv, compare_val.md, compare.md
# (the report split), curves.png (the report split).
source "$(dirname "$0")/common.sh"
usage="usage: experiments/retrain_classifier.sh TRAIN_DIR VAL_DIR REPORT_DIR [overrides]"
TRAIN=$(realpath "${1:?$usage}")
VAL=$(realpath "${2:?$usage}")
REPORT=$(realpath "${3:?$usage}")
shift 3
case "$REPORT" in "$TRAIN" | "$VAL") echo "REPORT_DIR must be a folder of its own, not TRAIN_DIR or VAL_DIR" >&2; exit 2 ;; esac
[ "$TRAIN" != "$VAL" ] || { echo "VAL_DIR must be a folder of its own, not TRAIN_DIR" >&2; exit 2; }
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
  mkdir -p "$run"
  train=$TRAIN splits="val report" photos=""
  if [ "${REFIT:-0}" = 1 ]; then
    train="$PWD/$run/photos" splits=report photos=" on TRAIN_DIR and VAL_DIR together (REFIT=1)"
    link_photos "$train" "$TRAIN" "$VAL"
  fi
  pcsr-train experiment=retrain_$backbone data.train.path="$train" data.val.path="$VAL" \
    init.checkpoint="$released" "${settings[@]}" resume=$resume hydra.run.dir="$run" "$@"
  echo "$backbone: experiment=retrain_$backbone ${settings[*]} $*$photos, trained in $(( $(date +%s) - start )) s" \
    "(wall clock, this run), on $(lscpu | sed -n 's/^Model name: *//p') ($(nproc --all) CPUs," \
    "${OMP_NUM_THREADS:-one per CPU} intra-op threads)" | tee -a "$run/trained.txt"
  for swapped in "retrained_C_only classifier" "retrained_U1_only upsamplers.1"; do
    read -r name part <<< "$swapped"
    pcsr swap "$released" "$run/final.ckpt" --parts "$part" --out "$run/$name.ckpt"
  done
  for split in $splits; do
    folder=$VAL
    [ $split = report ] && folder=$REPORT
    mkdir -p "$run/$split"
    pcsr eval --ckpt "$released" --hr-dir "$folder" --k $RETRAIN_KS --ends --summary "$run/$split/released.csv"
    for name in retrained retrained_C_only retrained_U1_only; do
      ckpt="$run/$name.ckpt"
      [ $name = retrained ] && ckpt="$run/final.ckpt"
      pcsr eval --ckpt "$ckpt" --hr-dir "$folder" --k $RETRAIN_KS --ends --summary "$run/$split/$name.csv"
    done
  done
  for split in $splits; do
    table="$run/compare.md" plot=(--plot "$run/curves.png") folder=$REPORT
    [ $split = val ] && table="$run/compare_val.md" plot=() folder=$VAL
    pcsr compare released="$run/$split/released.csv" retrained="$run/$split/retrained.csv" \
      retrained_C_only="$run/$split/retrained_C_only.csv" retrained_U1_only="$run/$split/retrained_U1_only.csv" \
      --table "$table" "${plot[@]}" --log-x \
      --title "$backbone-PCSR x4 on $(basename "$folder") ($split): released vs stage 1 re-trained"
  done
done
