"""Method families; each module registers its detectors with `upd_core.registry.register`."""
