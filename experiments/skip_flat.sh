#!/usr/bin/env bash
# The flat-tile gate (--skip-flat) on the released CARN-PCSR and FSRCNN-PCSR, as reported in
# results/skip_flat.md: the score and cheap reconstruction chosen by measurement, the threshold chosen on
# validation photos, k sweeps alone vs k x threshold on the test photos (PSNR, GFLOPs), and wall-clock
# in paired interleaved rounds (pcsr bench) at 2K and 4K on CPU.
# PHOTOS: a folder of photographs (2K and 4K centre crops are made from it, split into val/test).
# Beside them, two other kinds with the threshold chosen on the validation photos: scikit-image's photos
# (about 512x512) and a deliberately textured set (skip_flat_photos.py --textures).
# THREADS (default 2), FAMILIES (default "carn fsrcnn"), BENCH_2K (how many test photos are timed at 2K).
# TIMING=0 runs only the PSNR/GFLOPs steps (they need no quiet machine); TIMING=1 (default) also the
# wall-clock steps, which do. A step whose output exists is not run again (a run can be resumed).
# FILL=linear: the gate with a linear fill fitted (`pcsr fit-fill`) on the validation photos, its threshold
# chosen there too, the rest as above on the other photos, in results/skip_flat_linear (the score and tile
# choices and the tiling costs do not depend on the fill and are not repeated).
source "$(dirname "$0")/common.sh"
PHOTOS=${PHOTOS:?set PHOTOS to a folder of photographs}
FILL=${FILL:-bicubic}
OUT=results/skip_flat$([ "$FILL" = bicubic ] || echo "_$FILL")
THREADS=${THREADS:-2}
FAMILIES=${FAMILIES:-"carn fsrcnn"}
BENCH_2K=${BENCH_2K:-6}
REPEATS=${REPEATS:-3}
TIMING=${TIMING:-1}
KS="-0.5 0 0.5 1 2"
# Threshold grids for the validation sweep: around where scores_<family>.md puts the 0.05 dB budget
declare -A THRESHOLDS=([carn]="0.02 0.03 0.04 0.045 0.05 0.06 0.08" [fsrcnn]="0.05 0.1 0.15 0.2 0.25 0.3 0.4")
if [ "$FILL" = linear ]; then  # the fitted fill loses less per skipped tile: the grid reaches higher
  THRESHOLDS=([carn]="0.06 0.08 0.1 0.15 0.2 0.25 0.3 0.4" [fsrcnn]="0.15 0.2 0.3 0.4 0.5 0.6 0.8")
fi
export OMP_NUM_THREADS=$THREADS
mkdir -p "$OUT"
step() {  # step OUTPUT COMMAND...: run COMMAND unless OUTPUT exists
  local out=$1
  shift
  [ -e "$out" ] || "$@"
}
python experiments/skip_flat_photos.py "$PHOTOS" $OUT/p2k --hr-size 1080x1920 --textures --samples
python experiments/skip_flat_photos.py "$PHOTOS" $OUT/p4k --hr-size 2160x3840
for family in $FAMILIES; do
  pcsr_ckpt=$CKPTS/$family-pcsr-phase1.ckpt
  orig_ckpt=$CKPTS/$family-x4.ckpt
  if [ "$FILL" = linear ]; then  # the fill fitted on the validation photos: nothing reported was fitted on
    step $OUT/$family-pcsr-fill.ckpt pcsr fit-fill $pcsr_ckpt $OUT/p2k/val --out $OUT/$family-pcsr-fill.ckpt
    pcsr_ckpt=$OUT/$family-pcsr-fill.ckpt
  fi
  gate="--skip-fill $FILL"
  # 1. which score, which cheap reconstruction, which tile size (no threshold is chosen on test photos)
  [ "$FILL" = bicubic ] && step $OUT/scores_$family.md python experiments/skip_flat_scores.py --ckpt $pcsr_ckpt --val $OUT/p2k/val --test $OUT/p2k/test \
    --tiles 8 16 32 64 --out $OUT/scores_$family.md
  # 1b. CARN: the released FSRCNN-PCSR over the whole image as the cheap reconstruction instead of bicubic
  if [ $family = carn ] && [ "$FILL" = bicubic ]; then
    step $OUT/scores_carn_fill.md python experiments/skip_flat_scores.py --ckpt $pcsr_ckpt \
      --fill-ckpt $CKPTS/fsrcnn-pcsr-phase1.ckpt --val $OUT/p2k/val --test $OUT/p2k/test --tiles 16 \
      --out $OUT/scores_carn_fill.md
  fi
  # 2. the threshold: the largest within 0.05 dB of PCSR at k=0, mean over the validation photos
  step $OUT/val_$family.csv pcsr eval --ckpt $pcsr_ckpt --hr-dir $OUT/p2k/val --k 0 --skip-flat ${THRESHOLDS[$family]} $gate \
    --summary $OUT/val_$family.csv --out $OUT/val_${family}_images.csv
  T=$(python experiments/skip_flat_pick.py $OUT/val_$family.csv)
  echo "$family: threshold $T" | tee $OUT/threshold_$family.txt
  # 3. test photos at 2K: the k sweep alone vs k x threshold (0 = every tile active: the cost of tiling alone)
  step $OUT/test_$family.csv pcsr eval --ckpt $pcsr_ckpt --original-ckpt $orig_ckpt --hr-dir $OUT/p2k/test --k $KS --skip-flat 0 $T $gate \
    --summary $OUT/test_$family.csv --out $OUT/test_${family}_images.csv
  step $OUT/test_${family}_halo8.csv pcsr eval --ckpt $pcsr_ckpt --hr-dir $OUT/p2k/test --k 0 --skip-flat $T --skip-halo 8 $gate \
    --summary $OUT/test_${family}_halo8.csv --out $OUT/test_${family}_halo8_images.csv
  pcsr compare pcsr=$OUT/test_$family.csv --table $OUT/compare_$family.md --plot $OUT/compare_$family.png
  for kind in textured skimage; do
    step $OUT/${kind}_$family.csv pcsr eval --ckpt $pcsr_ckpt --hr-dir $OUT/p2k/$kind --k 0 1 --skip-flat 0 $T $gate \
      --summary $OUT/${kind}_$family.csv --out $OUT/${kind}_${family}_images.csv
  done
  # 4. 4K: the threshold from step 2
  step $OUT/test4k_$family.csv pcsr eval --ckpt $pcsr_ckpt --hr-dir $OUT/p4k/test --k 0 1 --skip-flat 0 $T --skip-halo rf $gate \
    --summary $OUT/test4k_$family.csv --out $OUT/test4k_${family}_images.csv
  [ "$TIMING" = 1 ] || continue
  # 5. wall clock, every variant interleaved round by round (a shared machine drifts)
  for img in $(ls $OUT/p2k/test/*.png | awk "NR % 2 == 1" | head -n $BENCH_2K) $OUT/p2k/textured/texture_grass.png; do
    step $OUT/bench2k_${family}_$(basename $img .png).json \
      pcsr bench --pcsr-ckpt $pcsr_ckpt --original-ckpt $orig_ckpt --hr-size 1080x1920 --hr-image $img --k 0 \
      --skip-flat 0 $T --skip-halo rf 8 $gate --threads $THREADS --repeats $REPEATS --no-reference --no-ends \
      --json $OUT/bench2k_${family}_$(basename $img .png).json
  done
  for img in $OUT/p4k/test/*.png; do
    step $OUT/bench4k_${family}_$(basename $img .png).json \
      pcsr bench --pcsr-ckpt $pcsr_ckpt --original-ckpt $orig_ckpt --hr-size 2160x3840 --hr-image $img --k 0 \
      --skip-flat 0 $T --skip-halo rf 8 $gate --threads $THREADS --repeats $REPEATS --no-reference --no-ends \
      --json $OUT/bench4k_${family}_$(basename $img .png).json
  done
  # 6. the cost of tiling alone (threshold 0) and of the per-tile crops the window planner replaces
  [ "$FILL" = bicubic ] || continue
  [ -e $OUT/tiling_$family.md ] || python experiments/skip_flat_tiling.py --ckpt $pcsr_ckpt \
    --image $OUT/p2k/test/Blinds.png --rounds $REPEATS --halos rf 8 > $OUT/tiling_$family.md
done
python experiments/skip_flat_report.py $OUT
