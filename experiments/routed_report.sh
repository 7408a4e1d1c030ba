#!/usr/bin/env bash
# The routed stage routed_sweep.sh chose on the validation photos, reported on the report split: its
# model (RUN/routed/NAME/final.ckpt) and the released model with only its U_1, swept over k on REPORT_DIR
# and compared with RUN's report/released.csv (retrain_classifier.sh's released sweep of that split) at
# equal GFLOPs. Run it once, for the one setting chosen: the report split chooses nothing.
# Usage: experiments/routed_report.sh RUN NAME REPORT_DIR
# Writes RUN/routed/NAME/report/{retrained,retrained_U1_only}.csv and RUN/routed/NAME/compare.md.
source "$(dirname "$0")/common.sh"
usage="usage: experiments/routed_report.sh RUN NAME REPORT_DIR"
RUN=$(realpath "${1:?$usage}")
NAME=${2:?$usage}
REPORT=$(realpath "${3:?$usage}")
chosen="$RUN/routed/$NAME"
[ -f "$chosen/final.ckpt" ] || { echo "$chosen/final.ckpt not found: run routed_sweep.sh first" >&2; exit 2; }
if [ ! -f "$RUN/report/released.csv" ]; then
  echo "$RUN/report/released.csv not found: RUN must be a finished retrain_classifier.sh run" >&2
  exit 2
fi
backbone=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['backbone'])" "$RUN/manifest.json")
released="$PWD/$CKPTS/${backbone}-pcsr-phase1.ckpt"
mkdir -p "$chosen/report"
pcsr swap "$released" "$chosen/final.ckpt" --parts upsamplers.1 --out "$chosen/retrained_U1_only.ckpt"
pcsr eval --ckpt "$chosen/final.ckpt" --hr-dir "$REPORT" --k $RETRAIN_KS --ends --summary "$chosen/report/retrained.csv"
pcsr eval --ckpt "$chosen/retrained_U1_only.ckpt" --hr-dir "$REPORT" --k $RETRAIN_KS --ends \
  --summary "$chosen/report/retrained_U1_only.csv"
pcsr compare released="$RUN/report/released.csv" "$NAME=$chosen/report/retrained.csv" \
  "${NAME}_U1_only=$chosen/report/retrained_U1_only.csv" --table "$chosen/compare.md" --log-x \
  --title "$backbone-PCSR x4 on $(basename "$REPORT") (report): released vs stage 1 + routed $NAME" | grep "vs released"
