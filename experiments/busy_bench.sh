#!/usr/bin/env bash
# Routed CARN-PCSR (k=0) vs CARN on a machine shared with busy neighbour processes: `pcsr bench` quiet,
# beside 1 and 2 single-threaded busy loops and beside one nice-19 busy loop, each for the routed part on
# worker threads (--routed-threads $THREADS) and on the intra-op threads (--routed-threads 0, the former
# path). Prints one table of paired ratios with the CPU named; JSON per run in results/busy/.
# THREADS (2) intra-op threads for both models; SIZE (1024x1536) HR size; REPEATS (5) interleaved rounds;
# CASES ("quiet busy1 busy2 nice1") which neighbours; EMULATE_AVX2=1 caps torch, oneDNN and MKL at AVX2
# (an emulation on a CPU with AVX-512: caches and clocks stay that CPU's); RETAIN_FREED=1 sets GLIBC_TUNABLES so
# glibc keeps freed memory in the process instead of returning it and faulting fresh pages in on the next
# allocation (docs/performance.md, "The memory allocator").
source "$(dirname "$0")/common.sh"
OUT=results/busy
THREADS=${THREADS:-2}
SIZE=${SIZE:-1024x1536}
REPEATS=${REPEATS:-5}
CASES=${CASES:-"quiet busy1 busy2 nice1"}
mkdir -p "$OUT"
if [ "${EMULATE_AVX2:-0}" = 1 ]; then
  export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
  TAG=avx2-emulated
else
  TAG=native
fi
if [ "${RETAIN_FREED:-0}" = 1 ]; then
  export GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647
  TAG=$TAG-retained
fi

NEIGHBOURS=()
stop_neighbours() {
  for pid in "${NEIGHBOURS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${NEIGHBOURS[@]}"; do wait "$pid" 2>/dev/null || true; done
  NEIGHBOURS=()
}
trap stop_neighbours EXIT
trap 'stop_neighbours; exit 130' INT TERM
start_neighbours() {  # count, nice level
  for _ in $(seq "$1"); do
    nice -n "$2" python3 -c 'while True: pass' &
    NEIGHBOURS+=($!)
  done
  sleep 1
}

for case in $CASES; do
  case $case in
    quiet) ;;
    busy1) start_neighbours 1 0 ;;
    busy2) start_neighbours 2 0 ;;
    nice1) start_neighbours 1 19 ;;
    *) echo "unknown case $case (quiet busy1 busy2 nice1)" >&2; exit 2 ;;
  esac
  for routed in "$THREADS" 0; do
    pcsr bench --pcsr-ckpt $CKPTS/carn-pcsr-phase1.ckpt --original-ckpt $CKPTS/carn-x4.ckpt --hr-size "$SIZE" \
      --k 0 --threads "$THREADS" --routed-threads "$routed" --repeats "$REPEATS" --no-reference \
      --json "$OUT/$TAG-$case-routed$routed.json" > "$OUT/$TAG-$case-routed$routed.log"
  done
  stop_neighbours
done

python3 - "$OUT" "$TAG" "$THREADS" "$CASES" <<'EOF'
import json, subprocess, sys
out, tag, threads, cases = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split()
lscpu = dict(line.split(":", 1) for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
             if ":" in line)
flags = lscpu.get("Flags", "").split()
cpu = (f"{lscpu.get('Model name', '?').strip()}, family {lscpu.get('CPU family', '?').strip()} "
       f"model {lscpu.get('Model', '?').strip()}, "
       f"avx2 {'yes' if 'avx2' in flags else 'no'}, avx512f {'yes' if 'avx512f' in flags else 'no'}")
names = {"quiet": "quiet", "busy1": "1 busy neighbour", "busy2": "2 busy neighbours", "nice1": "1 nice-19 neighbour"}
runs = {(c, r): json.load(open(f"{out}/{tag}-{c}-routed{r}.json")) for c in cases for r in (threads, "0")}
first = runs[(cases[0], threads)]
print(f"CPU: {cpu}; torch {first['machine']['torch']}, capability {first['machine']['cpu_capability']} ({tag}"
      f"{', GLIBC_TUNABLES=' + first['machine']['glibc_tunables'] if first['machine'].get('glibc_tunables') else ''}); "
      f"{threads} threads; HR {first['hr_size'][0]}x{first['hr_size'][1]}, x{first['scale']}, k=0, fp32")
print(f"| case | routed on {threads} workers: CARN ms | PCSR ms | x CARN | routed on the intra-op threads: CARN ms "
      "| PCSR ms | x CARN |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for c in cases:
    cells = [f"{r['ms_original']:.0f} | {r['ms_pcsr']:.0f} | {r['ratio_pcsr']:.3f}" for r in (runs[(c, threads)], runs[(c, "0")])]
    print(f"| {names[c]} | {cells[0]} | {cells[1]} |")
EOF
