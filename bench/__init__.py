"""artifact-bench: adversarial robustness of face-forgery detectors."""

__version__ = "0.1.0"
