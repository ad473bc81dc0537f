"""CMMD: discriminative multimodal learning with a conditional prior (Mancisidor et al.)."""

from cmmd.model import CMMD

__all__ = ["CMMD"]
