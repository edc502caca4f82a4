#!/usr/bin/env bash
# Training recipes of the shipped MorphAEus-family checkpoints (MorphAEus paper: Bercea et al.,
# "What do we learn? Debunking the myth of unsupervised outlier detection"):
#   MorphAEus + its two ablations, the baselines beta-VAE / AAE / Soft-Intro VAE / DAE, and the
#   "curse of resolution" AEs with 32x32 ... 1x1 latents (Fig. 5).
# Kermany chest X-rays at 128x128, normal training images only; one `train` + one `evaluate`
# per checkpoint, each wrapped in the shared lock so trainings on this machine never overlap.
#
# Usage:   scripts/train_morphaeus.sh                       # everything, MorphAEus first
#          ONLY="morphaeus dae" scripts/train_morphaeus.sh  # a subset (method ids)
#          RESUME=1 scripts/train_morphaeus.sh              # continue interrupted trainings
# Logs:    $LOGDIR/train_<id>.log (default /tmp); checkpoints: checkpoints/<id>/ (see scripts/train_lib.sh)
# Evaluation: Kermany test split + 100 synthetic-lesion images for pixel metrics (EVAL_ARGS).
#
# Time budgets are CPU minutes (2 cores), far from the papers' hundreds of GPU epochs; the
# schedules defined in epochs are shortened with --set so that they complete within the budget
# (the values are recorded in each checkpoint's config.json and model card):
#   morphaeus: ~22 s/epoch -> ~27 epochs in 10 min; the deformation loss starts after epoch 10
#              (paper) and beta ramps 1e-3 -> 3 over 25 epochs instead of the authors' 200.
#   beta-vae:  ~10 s/epoch -> capacity C ramps 0 -> 50 nats over 30 epochs.
#   aae:       batch 64 instead of 128: twice the adversarial updates in the same time.
source "$(dirname "$0")/train_lib.sh"
EVAL_ARGS=${EVAL_ARGS:---synthetic-lesions 100}

# MorphAEus first (uses the CRADL encoder as perceptual backend when checkpoints/cradl-kermany-128
# exists, LPIPS only with cached ImageNet weights, else none; recorded as config "perceptual_used").
run morphaeus 10 --set warp_start_epoch=10 --set beta_ramp_epochs=25
run morphaeus-no-warp 6
run morphaeus-no-warp-no-pl 6
# Baselines (appendix A.1 settings; widths scaled so each model is < 15 MB).
run beta-vae 6 --set c_ramp_epochs=30
run aae 6 --batch-size 64
run soft-intro-vae 6
run dae 6
# Curse of resolution (Fig. 5): the same AE with the latent at 32x32 ... 1x1.
for side in 32 16 8 4 1; do
    run "ae-latent-$side" 3
done
echo "$(date '+%F %T') all MorphAEus-family trainings finished"
