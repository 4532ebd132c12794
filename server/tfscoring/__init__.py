"""The hardened scoring path behind server/score.py: parse, validate, infer, encode."""

import logging

# azmlinfsrv configures handlers on its "azmlinfsrv" logger only; children inherit them.
log = logging.getLogger("azmlinfsrv.tfscoring")

__version__ = "0.1.0"  # as pyproject.toml; the Open Inference Protocol's server metadata answers it
