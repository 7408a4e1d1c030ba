#!/usr/bin/env bash
# The flat-tile gate at 4K, where photos that large are few: every photo of PHOTOS that holds a 4K crop
# (turned a quarter turn if it only fits so) is reported at the threshold chosen on the OTHER 4K photos
# (the largest within 0.05 dB of PCSR at k = 0 on their mean), so no photo's number comes from a choice it
# took part in. Then each photo is timed with `pcsr bench --hr-image` (CARN, PCSR k = 0, PCSR with the gate
# at its threshold, halo 8 and the exact halo, interleaved rounds) twice: glibc's allocator as it comes and
# with freed memory kept in the process (GLIBC_TUNABLES, see docs/performance.md), since at 4K the
# allocator moves the ratios. Report: python experiments/skip_flat_report.py results/skip_flat_4k
# PHOTOS: folders of photos and/or photo files (space-separated); HR (2160x3836: the largest crop the
# development photos' two 4K photos and digiKam's lake photo share, one of them turned); FAMILIES (carn);
# THREADS (2); REPEATS (3); TIMING=0 skips the wall-clock steps. A step whose output exists is not re-run.
# FILL=linear fills skipped tiles with a linear fill fitted (`pcsr fit-fill`) on FIT_PHOTOS (folders and/or
# files; any photo named like a 4K photo is left out, so no reported photo is fitted on), results in
# results/skip_flat_4k_linear; FILL=bicubic (default) is the gate's own bicubic fill.
source "$(dirname "$0")/common.sh"
PHOTOS=${PHOTOS:?set PHOTOS to folders of photographs and/or photo files}
FILL=${FILL:-bicubic}
OUT=results/skip_flat_4k$([ "$FILL" = bicubic ] || echo "_$FILL")
HR=${HR:-2160x3836}
FAMILIES=${FAMILIES:-carn}
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-3}
TIMING=${TIMING:-1}
declare -A THRESHOLDS=([carn]="0.03 0.045 0.06 0.08 0.1 0.15 0.2 0.3" [fsrcnn]="0.1 0.15 0.2 0.25 0.3 0.4 0.6")
if [ "$FILL" = linear ]; then  # the fitted fill loses less per skipped tile: the grid reaches higher
  THRESHOLDS=([carn]="0.06 0.08 0.1 0.15 0.2 0.25 0.3 0.4" [fsrcnn]="0.15 0.2 0.3 0.4 0.5 0.6 0.8")
fi
KEEP_FREED=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647
export OMP_NUM_THREADS=$THREADS
mkdir -p "$OUT"
# shellcheck disable=SC2086  # PHOTOS is a list
python experiments/skip_flat_photos.py $PHOTOS $OUT/photos --hr-size "$HR" --split none --portrait
if [ "$FILL" = linear ]; then
  FIT_PHOTOS=${FIT_PHOTOS:?FILL=linear: set FIT_PHOTOS to the photos the fill is fitted on}
  fit=()
  # shellcheck disable=SC2086  # FIT_PHOTOS is a list
  for f in $(find $FIT_PHOTOS -maxdepth 1 -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | sort); do
    stem=$(basename "${f%.*}")
    if [ -e "$OUT/photos/all/$stem.png" ]; then echo "not fitted on $f: it is a reported 4K photo"; else fit+=("$f"); fi
  done
fi
for family in $FAMILIES; do
  pcsr_ckpt=$CKPTS/$family-pcsr-phase1.ckpt
  orig_ckpt=$CKPTS/$family-x4.ckpt
  if [ "$FILL" = linear ]; then
    [ -e $OUT/$family-pcsr-fill.ckpt ] || pcsr fit-fill $pcsr_ckpt "${fit[@]}" --out $OUT/$family-pcsr-fill.ckpt
    pcsr_ckpt=$OUT/$family-pcsr-fill.ckpt
  fi
  [ -e $OUT/all_$family.csv ] || pcsr eval --ckpt $pcsr_ckpt --hr-dir $OUT/photos/all --k 0 \
    --skip-flat ${THRESHOLDS[$family]} --skip-halo 8 --skip-fill "$FILL" --summary $OUT/all_$family.csv \
    --out $OUT/all_${family}_images.csv
  : > $OUT/loo_$family.txt
  for img in $OUT/photos/all/*.png; do
    name=$(basename "$img" .png)
    T=$(python experiments/skip_flat_pick.py $OUT/all_${family}_images.csv --leave-out "$name")
    echo "$name $T" | tee -a $OUT/loo_$family.txt
    [ "$TIMING" = 1 ] || continue
    for alloc in asis kept; do
      json=$OUT/bench4k_${alloc}_${family}_$name.json
      [ -e "$json" ] && continue
      if [ $alloc = kept ]; then export GLIBC_TUNABLES=$KEEP_FREED; else unset GLIBC_TUNABLES; fi
      pcsr bench --pcsr-ckpt $pcsr_ckpt --original-ckpt $orig_ckpt --hr-size "$HR" --hr-image "$img" --k 0 \
        --skip-flat "$T" --skip-halo 8 rf --skip-fill "$FILL" --threads $THREADS --repeats $REPEATS --no-reference --no-ends --json "$json"
      unset GLIBC_TUNABLES
    done
  done
done
python experiments/skip_flat_report.py $OUT
