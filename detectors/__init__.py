"""Built-in detectors, one file per family; each registers itself with
``bench.registry.DETECTORS`` when imported. The registry imports every submodule lazily."""
