#!/usr/bin/env bash
# Training recipe of the shipped domain classifier (checkpoints/domain-classifier/), used by the app's
# out-of-distribution warning and the Myth page's manifold test (FD + classifier confidence).
# Chest X-rays: Kermany train/NORMAL; other domains: the embedded demo set (upd_core.demo), augmented.
# When checkpoints/cradl-kermany-128 exists, the Fréchet-distance statistics are also computed in the
# CRADL encoder's feature space; after (re)training CRADL run `python -m upd_core.domain refresh-ssl-stats`
# (new statistics, the classifier unchanged) rather than this script, then `python -m upd_core myth precompute`.
# Writes the one checkpoint format (model.safetensors, config.json with the recipe and training record,
# MODEL_CARD.md, manifest.json with sha256) and lists the folder under "auxiliary" in checkpoints/manifest.json.
# Runs under the shared training lock so it never overlaps another training on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LOCK=${UPD_TRAIN_LOCK:-/tmp/upd_train.lock}
DATA=${DATA:-kermany}
flock "$LOCK" "$PY" -m upd_core.domain train --data "$DATA" --out checkpoints/domain-classifier --epochs 20 --seed 0
