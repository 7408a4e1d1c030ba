#!/usr/bin/env bash
# The learned flat-tile gate (--gate learned) against the Laplacian (--gate laplacian) on the released
# CARN-PCSR and FSRCNN-PCSR, as reported in results/learned_gate.md: the gate trained alone (recipe
# gate_<family>) on training photos disjoint from the evaluation photos, a threshold per scorer chosen on
# the validation photos (the largest within 0.05 dB of PCSR at k = 0), both reported on the test photos.
# PHOTOS: the folder of photographs the evaluation photos are cut from (experiments/skip_flat_photos.py,
#   2K crops split into val/test; the same as skip_flat.sh's).
# POOL: a photo pool from photo_pool.py (default: scikit-image's bundled photos, built here); its photos
#   that match an evaluation photo by name or content are left out (learned_gate_photos.py).
# FAMILIES (default "carn fsrcnn"), THREADS (default 2), GATE_STEPS (default: the recipe's).
# A step whose output exists is not run again.
source "$(dirname "$0")/common.sh"
PHOTOS=${PHOTOS:?set PHOTOS to the folder of photographs the evaluation photos come from}
OUT=results/learned_gate
EVAL=results/skip_flat/p2k
THREADS=${THREADS:-2}
FAMILIES=${FAMILIES:-"carn fsrcnn"}
export OMP_NUM_THREADS=$THREADS
declare -A LAPLACIAN=([carn]="0.02 0.03 0.04 0.06" [fsrcnn]="0.05 0.1 0.2 0.3")
mkdir -p "$OUT"
step() {  # step OUTPUT COMMAND...: run COMMAND unless OUTPUT exists
  local out=$1
  shift
  [ -e "$out" ] || "$@"
}
python experiments/skip_flat_photos.py "$PHOTOS" $EVAL --hr-size 1080x1920
if [ -z "${POOL:-}" ]; then
  POOL=$OUT/pool
  step $POOL/pool.csv python experiments/photo_pool.py $POOL --packages scikit-image --min-side 300 --force
fi
step $OUT/photos/check.csv python experiments/learned_gate_photos.py "$POOL" "$PHOTOS" $EVAL/val $EVAL/test --out $OUT/photos
for family in $FAMILIES; do
  run=$OUT/train_$family
  gated=$run/final.ckpt
  if [ ! -e "$gated" ]; then
    start=$(date +%s)
    pcsr-train experiment=gate_$family data.train.path=$PWD/$OUT/photos/train data.val.path=$PWD/$OUT/photos/val \
      init.checkpoint=$PWD/$CKPTS/$family-pcsr-phase1.ckpt paths.output_dir=$PWD/$run \
      ${GATE_STEPS:+model.gate_steps=$GATE_STEPS}
    echo "$(( $(date +%s) - start ))" > $run/train_seconds.txt
  fi
  lap=${LAPLACIAN[$family]}
  step $OUT/thresholds_$family.txt bash -c "python experiments/learned_gate_report.py thresholds --ckpt $gated \
    --images $EVAL/val --laplacian $lap > $OUT/thresholds_$family.txt"
  learned=$(cat $OUT/thresholds_$family.txt)
  for scorer in laplacian learned; do
    grid=$lap
    [ $scorer = learned ] && grid=$learned
    step $OUT/val_${family}_$scorer.csv pcsr eval --ckpt $gated --hr-dir $EVAL/val --k 0 --skip-flat $grid \
      --gate $scorer --summary $OUT/val_${family}_$scorer.csv --out $OUT/val_${family}_${scorer}_images.csv
    T=$(python experiments/skip_flat_pick.py $OUT/val_${family}_$scorer.csv)
    echo "$family $scorer: threshold $T" | tee $OUT/threshold_${family}_$scorer.txt
    step $OUT/test_${family}_$scorer.csv pcsr eval --ckpt $gated --hr-dir $EVAL/test --k 0 --skip-flat $T \
      --gate $scorer --summary $OUT/test_${family}_$scorer.csv --out $OUT/test_${family}_${scorer}_images.csv
  done
done
python experiments/learned_gate_report.py table $OUT $FAMILIES | tee $OUT/report.md
