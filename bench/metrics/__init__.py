"""Metrics: ASR, image quality, identity retention, bootstrap intervals."""
