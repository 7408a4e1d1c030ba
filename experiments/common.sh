# Sourced by the scripts here: the venv's commands and the imported release checkpoints.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -x .venv/bin/pcsr ] || make install
export PATH="$PWD/.venv/bin:$PATH"
OFFICIAL=${PCSR_OFFICIAL_DIR:-../shared/reference/official-pcsr}
CKPTS=results/checkpoints
mkdir -p "$CKPTS"
for name in carn-x4 carn-pcsr-phase1 fsrcnn-x4 fsrcnn-pcsr-phase1; do
  if [ ! -f "$CKPTS/$name.ckpt" ]; then
    [ -f "$OFFICIAL/$name.pth" ] || { echo "missing $OFFICIAL/$name.pth: set PCSR_OFFICIAL_DIR" >&2; exit 2; }
    pcsr import-official --src "$OFFICIAL/$name.pth" --out "$CKPTS/$name.ckpt"
  fi
done
# The k sweep of the retraining comparisons (retrain_classifier.sh, routed_sweep.sh: their curves are
# compared point by point, so both use this one list), dense between 0.2 and 0.6 where the curves part.
RETRAIN_KS="-0.5 -0.25 0 0.05 0.1 0.15 0.2 0.25 0.3 0.35 0.4 0.5 0.6 0.75 1 1.5 2"
# link_photos DEST DIR...: DEST (emptied first) gets a link to every image of each DIR, the images the
# training run would read there; two images of the same name are refused.
link_photos() {
  local dest=$1
  shift
  rm -rf "$dest"
  mkdir -p "$dest"
  python - "$dest" "$@" <<'PY'
import sys
from pathlib import Path

from pcsr_lightning.io.images import list_images

dest = Path(sys.argv[1])
for folder in sys.argv[2:]:
    try:
        photos = list_images(folder)
    except FileNotFoundError as err:
        sys.exit(f"link_photos: {err}")
    for photo in photos:
        link = dest / photo.name
        if link.is_symlink():
            sys.exit(f"link_photos: two images named {link.name}: {link.resolve()} and {photo}")
        link.symlink_to(photo.resolve())
PY
}
