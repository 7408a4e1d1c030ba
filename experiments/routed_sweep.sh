#!/usr/bin/env bash
# The stage of U_1 alone (stage1_routed of model=pcsr_routed), tried with several values of skip_hardest
# from one trained stage 1: each run is the recipe conf/experiment/retrain_<backbone>.yaml with B, U_0 and
# the stage-1 U_1 + classifier loaded from RUN (a finished retrain_classifier.sh folder, or any run with
# stages/stage1/model.ckpt; 'init.stages=[stage0,stage1]'), trains U_1 alone, sweeps k on the validation
# photos and compares with RUN's val/released.csv. It chooses a setting, so it never sees the report split.
# Usage: experiments/routed_sweep.sh TRAIN_DIR VAL_DIR RUN [Hydra overrides]
#   SKIPS="0 0.02 0.05 0.1"   values of skip_hardest (model.stages.stage_j_routed.module.skip_hardest: the
#                             fraction of each batch's pixels, lowest p_1, left out)
#   POWERS="1"                values of p_power (model.stages.stage_j_routed.module.p_power: the pixel
#                             weights are p_1 ** p_power; 0 weighs every pixel alike), each with every SKIPS
#   TEACHERS="0"              values of teacher_weight (model.stages.stage_j_routed.module.teacher_weight:
#                             the weight of the L1 to the frozen U_0's output beside the recipe's 1000 x L1
#                             to the photo), each with every POWERS and SKIPS
#   ROUTED_STEPS QUERIES LR   when set, override the recipe's values, as in retrain_classifier.sh
# Writes RUN/routed/skip<value>/ (p_power 1) or skip<value>_p<power>/, with _t<teacher> appended for a
# teacher weight other than 0 (run folder, retrained.csv) and RUN/routed/compare.md.
source "$(dirname "$0")/common.sh"
usage="usage: experiments/routed_sweep.sh TRAIN_DIR VAL_DIR RUN [overrides]"
TRAIN=$(realpath "${1:?$usage}")
VAL=$(realpath "${2:?$usage}")
RUN=$(realpath "${3:?$usage}")
shift 3
stage1="$RUN/stages/stage1/model.ckpt"
[ -f "$stage1" ] || { echo "$stage1 not found: RUN must hold a finished stage 1" >&2; exit 2; }
[ -f "$RUN/val/released.csv" ] || { echo "$RUN/val/released.csv not found: run retrain_classifier.sh first" >&2; exit 2; }
backbone=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['backbone'])" "$RUN/manifest.json")
[ -f "conf/experiment/retrain_$backbone.yaml" ] || { echo "RUN trained $backbone, which has no recipe conf/experiment/retrain_$backbone.yaml" >&2; exit 2; }
settings=()
[ -n "${ROUTED_STEPS:-}" ] && settings+=(model.routed_steps="$ROUTED_STEPS")
[ -n "${QUERIES:-}" ] && settings+=(profile.queries="$QUERIES")
[ -n "${LR:-}" ] && settings+=(optimizer.lr="$LR")
curves=(released="$RUN/val/released.csv")
for teacher in ${TEACHERS:-0}; do
  for power in ${POWERS:-1}; do
    for skip in ${SKIPS:-0 0.02 0.05 0.1}; do
      name="skip$skip"
      [ "$power" = 1 ] || name="skip${skip}_p$power"
      [ "$teacher" = 0 ] || name="${name}_t$teacher"
      out="$RUN/routed/$name"
      if [ ! -f "$out/final.ckpt" ]; then
        rm -rf "$out"
        pcsr-train experiment=retrain_$backbone data.train.path="$TRAIN" data.val.path="$VAL" \
          init.checkpoint="$stage1" 'init.stages=[stage0,stage1]' \
          model.stages.stage_j_routed.module.skip_hardest="$skip" model.stages.stage_j_routed.module.p_power="$power" \
          model.stages.stage_j_routed.module.teacher_weight="$teacher" "${settings[@]}" hydra.run.dir="$out" "$@"
      fi
      pcsr eval --ckpt "$out/final.ckpt" --hr-dir "$VAL" --k $RETRAIN_KS --ends --summary "$out/retrained.csv"
      curves+=("$name=$out/retrained.csv")
    done
  done
done
pcsr compare "${curves[@]}" --table "$RUN/routed/compare.md" | grep "vs released"
