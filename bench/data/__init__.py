"""Dataset adapters; each module registers itself with ``bench.registry.DATASETS``."""
