#!/usr/bin/env bash
# How far is the re-trained stage 1 from the release for a given budget? The recipe of
# retrain_classifier.sh (conf/experiment/retrain_<backbone>.yaml) run on fewer training photos and with
# fewer steps, each run reported on VAL_DIR and REPORT_DIR like retrain_classifier.sh's, then one table of
# the gaps to the released curve: experiments/retrain_budget_report.py.
# Usage: experiments/retrain_budget.sh TRAIN_DIR VAL_DIR REPORT_DIR [Hydra overrides]
#   VARIANTS="photos25 photos50 steps25 steps50"   which runs (any of these, in this order):
#     photosN  N % of TRAIN_DIR's photos (every (100/N)-th image in name order, so photos25 is part of
#              photos50), all the steps
#     stepsN   all of TRAIN_DIR, N % of the steps in both stages (each run its own cosine schedule)
#   FULL=RUN   a finished retrain_classifier.sh run folder of the whole recipe on the same folders (the
#              100 % row); without it the table has no 100 % row
#   STEPS, ROUTED_STEPS  the 100 % the fractions are taken of (default: the recipe's); photosN runs use them
#   BACKBONES, RUNS=results/retrain_budget, and the other variables of retrain_classifier.sh
# Writes RUNS/<variant>/<backbone>/ (as retrain_classifier.sh), RUNS/photos/<variant>/ (the subsets, links)
# and RUNS/budget.md.
source "$(dirname "$0")/common.sh"
usage="usage: experiments/retrain_budget.sh TRAIN_DIR VAL_DIR REPORT_DIR [overrides]"
TRAIN=$(realpath "${1:?$usage}")
VAL=$(realpath "${2:?$usage}")
REPORT=$(realpath "${3:?$usage}")
shift 3
RUNS=${RUNS:-results/retrain_budget}
# the steps the fractions are taken of: STEPS / ROUTED_STEPS when set, else the recipe's
backbone=${BACKBONES:-fsrcnn}
backbone=${backbone%% *}
read -r stage_steps routed_steps < <(python -c "
import sys
from pcsr_lightning.config import compose_config
filled = ['data.train.path=-', 'data.val.path=-', 'init.checkpoint=-']
cfg = compose_config([f'experiment=retrain_{sys.argv[1]}', *filled], '-')
print(cfg.profile.steps.stage, cfg.model.routed_steps)" "$backbone")
stage_steps=${STEPS:-$stage_steps}
routed_steps=${ROUTED_STEPS:-$routed_steps}
# the photos the training run reads (pcsr_lightning.io.images.list_images: by extension, in name order)
mapfile -t photos < <(python -c "
import sys
from pcsr_lightning.io.images import list_images
print('\\n'.join(str(p) for p in list_images(sys.argv[1])))" "$TRAIN")
[ ${#photos[@]} -ge 4 ] || { echo "TRAIN_DIR has ${#photos[@]} photos: at least 4 are needed for photos25" >&2; exit 2; }
for variant in ${VARIANTS:-photos25 photos50 steps25 steps50}; do
  percent=${variant#photos}
  percent=${percent#steps}
  case "$variant" in
    photos25 | photos50 | steps25 | steps50) ;;
    *) echo "unknown variant '$variant': photos25, photos50, steps25, steps50" >&2; exit 2 ;;
  esac
  train=$TRAIN
  steps=(STEPS="$stage_steps" ROUTED_STEPS="$routed_steps")
  if [ "${variant#photos}" != "$variant" ]; then
    train="$PWD/$RUNS/photos/$variant"
    every=$(( 100 / percent ))
    rm -rf "$train"
    mkdir -p "$train"
    for i in "${!photos[@]}"; do
      if [ $(( i % every )) = 0 ]; then ln -s "${photos[$i]}" "$train/"; fi
    done
  else
    steps=(STEPS=$(( stage_steps * percent / 100 )) ROUTED_STEPS=$(( routed_steps * percent / 100 )))
  fi
  echo "$variant: $(find "$train" -maxdepth 1 \( -type f -o -type l \) | wc -l) training photos ${steps[*]}"
  env "${steps[@]}" RUNS="$RUNS/$variant" bash experiments/retrain_classifier.sh "$train" "$VAL" "$REPORT" "$@"
done
extra=()
[ -n "${FULL:-}" ] && extra=(--run "full=$FULL")
python experiments/retrain_budget_report.py "$RUNS" "${extra[@]}" | tee "$RUNS/budget.md"
