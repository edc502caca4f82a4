#!/usr/bin/env bash
# Training recipes of the first shipped checkpoints: spatial AE, dense AE (Baur et al.) and VAE
# (Zimmerer et al.), configured as in the MorphAEus paper's appendix, on the Kermany normal
# training images at 128x128; each evaluated on the Kermany test split with 100 synthetic-lesion
# images for pixel metrics. Time budgets are CPU minutes on 2 cores (bf16 autocast + channels_last,
# see benchmarks/bench_training_numerics.py), with early stopping (patience 25) as in the paper.
source "$(dirname "$0")/train_lib.sh"
EVAL_ARGS=${EVAL_ARGS:---synthetic-lesions 100}
run spatial-ae 7
run dense-ae 7
run vae 7
echo "$(date '+%F %T') foundation trainings finished"
