#!/usr/bin/env bash
# GPU latency (e.g. an H100): the speed_gpu study (conf/study/speed_gpu.yaml) on the released checkpoints
# from PCSR_OFFICIAL_DIR; extra arguments are study overrides (e.g. 'sizes=[1080x1920]').
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/pcsr-study ] || make install
exec .venv/bin/pcsr-study study=speed_gpu release="${PCSR_OFFICIAL_DIR:?set PCSR_OFFICIAL_DIR to the released .pth files}" "$@"
