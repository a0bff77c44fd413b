"""Example artifact-bench plugin: one detector, found through an entry point."""
