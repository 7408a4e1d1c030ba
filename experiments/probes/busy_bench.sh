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
# GATE adds a flat-tile gate variant (its pcsr bench flags, e.g. "--skip-flat 0.4 --skip-halo 8 --skip-fill
# linear") and its columns; PCSR_CKPT (the released CARN-PCSR) the PCSR model (e.g. one from pcsr fit-fill);
# HR_IMAGE a photo to time on instead of the mosaic; ROUTED ("$THREADS 0") the routed-part modes to run.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x .venv/bin/pcsr ] || make install
export PATH="$PWD/.venv/bin:$PATH"
# the released checkpoints (PCSR_OFFICIAL_DIR) imported once into results/checkpoints, where the probes read them
OFFICIAL=${PCSR_OFFICIAL_DIR:-../shared/reference/official-pcsr}
CKPTS=results/checkpoints
mkdir -p "$CKPTS"
for name in carn-x4 carn-pcsr-phase1 fsrcnn-x4 fsrcnn-pcsr-phase1; do
  [ -f "$CKPTS/$name.ckpt" ] || pcsr import-official --src "$OFFICIAL/$name.pth" --out "$CKPTS/$name.ckpt"
done
OUT=results/busy
THREADS=${THREADS:-2}
SIZE=${SIZE:-1024x1536}
REPEATS=${REPEATS:-5}
CASES=${CASES:-"quiet busy1 busy2 nice1"}
PCSR_CKPT=${PCSR_CKPT:-$CKPTS/carn-pcsr-phase1.ckpt}
ROUTED=${ROUTED:-"$THREADS 0"}
EXTRA=()
[ -z "${HR_IMAGE:-}" ] || EXTRA+=(--hr-image "$HR_IMAGE")
# shellcheck disable=SC2206  # GATE is a list of flags
[ -z "${GATE:-}" ] || EXTRA+=($GATE --no-ends)
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
[ -z "${HR_IMAGE:-}" ] || TAG=$TAG-$(basename "${HR_IMAGE%.*}")
[ -z "${GATE:-}" ] || TAG=$TAG-gate

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
  for routed in $ROUTED; do
    pcsr bench --pcsr-ckpt "$PCSR_CKPT" --original-ckpt $CKPTS/carn-x4.ckpt --hr-size "$SIZE" \
      --k 0 --threads "$THREADS" --routed-threads "$routed" --repeats "$REPEATS" --no-reference \
      "${EXTRA[@]}" --json "$OUT/$TAG-$case-routed$routed.json" > "$OUT/$TAG-$case-routed$routed.log"
  done
  stop_neighbours
done

python3 - "$OUT" "$TAG" "$CASES" $ROUTED <<'EOF'
import json, os, statistics, subprocess, sys
out, tag, cases, modes = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4:]
lscpu = dict(line.split(":", 1) for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
             if ":" in line)
flags = lscpu.get("Flags", "").split()
cpu = (f"{lscpu.get('Model name', '?').strip()}, family {lscpu.get('CPU family', '?').strip()} "
       f"model {lscpu.get('Model', '?').strip()}, "
       f"avx2 {'yes' if 'avx2' in flags else 'no'}, avx512f {'yes' if 'avx512f' in flags else 'no'}")
names = {"quiet": "quiet", "busy1": "1 busy neighbour", "busy2": "2 busy neighbours", "nice1": "1 nice-19 neighbour"}
runs = {(c, r): json.load(open(f"{out}/{tag}-{c}-routed{r}.json")) for c in cases for r in modes}
first = runs[(cases[0], modes[0])]
gate = [r["name"] for r in first["rows"] if " skip=" in r["name"]]


def paired(a, b):  # the median of same-round ratios, as pcsr bench reports them
    return statistics.median(x / y for x, y in zip(a, b))


def cells(run):
    rows = {r["name"]: r for r in run["rows"]}
    out = [f"{run['ms_original']:.0f}", f"{run['ms_pcsr']:.0f}", f"{run['ratio_pcsr']:.3f}"]
    for name in gate:
        g = rows[name]
        out += [f"{g['ms']:.0f}", f"{paired(g['times_ms'], rows['original']['times_ms']):.3f}",
                f"{paired(g['times_ms'], rows['pcsr k=0']['times_ms']):.3f}"]
    return out


print(f"CPU: {cpu}; torch {first['machine']['torch']}, capability {first['machine']['cpu_capability']} ({tag}"
      f"{', GLIBC_TUNABLES=' + first['machine']['glibc_tunables'] if first['machine'].get('glibc_tunables') else ''}); "
      f"{first['machine'].get('threads', '?')} threads; HR {first['hr_size'][0]}x{first['hr_size'][1]}, "
      f"x{first['scale']}, k=0, fp32{'; ' + os.environ['HR_IMAGE'] if os.environ.get('HR_IMAGE') else ''}"
      f"{'; gate ' + os.environ['GATE'] if os.environ.get('GATE') else ''}")
mode_names = {m: "routed on the intra-op threads" if m == "0" else f"routed on {m} workers" for m in modes}
head = ["CARN ms", "PCSR ms", "x CARN"] + [h for n in gate for h in (f"{n} ms", "x CARN", "x PCSR")]
print("| case | " + " | ".join(f"{mode_names[m]}: {h}" if i == 0 else h for m in modes for i, h in enumerate(head)) + " |")
print("|" + " --- |" * (1 + len(head) * len(modes)))
for c in cases:
    print(f"| {names[c]} | " + " | ".join(x for m in modes for x in cells(runs[(c, m)])) + " |")
EOF
