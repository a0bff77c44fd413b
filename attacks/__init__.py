"""Built-in attacks, one file per family; each registers itself with ``bench.registry.ATTACKS``
when imported. The registry imports every submodule lazily on first lookup."""
