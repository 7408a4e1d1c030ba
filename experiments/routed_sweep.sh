#!/usr/bin/env bash
# The stage of U_1 alone (model=pcsr_routed), tried with several values of skip_hardest from one trained
# stage 1: each run loads B, U_0 and the stage-1 U_1 + classifier from RUN (a finished
# retrain_classifier.sh folder, or any run with stages/stage1/model.ckpt), trains U_1 alone, sweeps k on
# the held-out photos and compares with RUN's released.csv.
# Usage: experiments/routed_sweep.sh TRAIN_DIR HELDOUT_DIR RUN [Hydra overrides]
#   SKIPS="0 0.02 0.05 0.1"   values of skip_hardest (the fraction of each batch's pixels, lowest p_1, left out)
#   ROUTED_STEPS=5000 QUERIES=4096 LR=3e-3   as in retrain_classifier.sh
# Writes RUN/routed/skip<value>/ (run folder, retrained.csv) and RUN/routed/compare.md.
source "$(dirname "$0")/common.sh"
usage="usage: experiments/routed_sweep.sh TRAIN_DIR HELDOUT_DIR RUN [overrides]"
TRAIN=$(realpath "${1:?$usage}")
HELDOUT=$(realpath "${2:?$usage}")
RUN=$(realpath "${3:?$usage}")
shift 3
stage1="$RUN/stages/stage1/model.ckpt"
[ -f "$stage1" ] || { echo "$stage1 not found: RUN must hold a finished stage 1" >&2; exit 2; }
[ -f "$RUN/released.csv" ] || { echo "$RUN/released.csv not found: run retrain_classifier.sh first" >&2; exit 2; }
experiment=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['experiment'])" "$RUN/manifest.json")
curves=(released="$RUN/released.csv")
for skip in ${SKIPS:-0 0.02 0.05 0.1}; do
  out="$RUN/routed/skip$skip"
  if [ ! -f "$out/final.ckpt" ]; then
    rm -rf "$out"
    pcsr-train experiment="$experiment" data=image_folder data.train.path="$TRAIN" data.val.path="$HELDOUT" \
      model=pcsr_routed init.checkpoint="$stage1" 'init.stages=[stage0,stage1]' profile=quick \
      model.routed_steps="${ROUTED_STEPS:-5000}" model.stages.stage_j_routed.module.skip_hardest="$skip" \
      profile.queries="${QUERIES:-4096}" optimizer.lr="${LR:-3e-3}" logger=csv callbacks=none hydra.run.dir="$out" "$@"
  fi
  pcsr eval --ckpt "$out/final.ckpt" --hr-dir "$HELDOUT" --k $RETRAIN_KS --ends --summary "$out/retrained.csv"
  curves+=("skip$skip=$out/retrained.csv")
done
pcsr compare "${curves[@]}" --table "$RUN/routed/compare.md" | grep "vs released"
