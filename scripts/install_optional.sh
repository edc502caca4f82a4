#!/usr/bin/env bash
# Optional system packages: Debian data packages for the embedded demo set (Fashion-MNIST,
# Colin27 brain MRI) and Chromium for the browser tests. Skipped with a message where apt-get
# is not available or we are not root; the project works without them (those parts skip).
set -u
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
