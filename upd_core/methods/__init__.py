"""Method families (each module registers its detectors with `upd_core.registry.register`) and the
parts they share: `blocks`, `reconstruction`, `augmentations`, `density_heads`, `vae_helpers`."""
