"""Kept at the reference's import path; the logic lives in :mod:`nnunetv2.configuration`."""
from nnunetv2.configuration import get_allowed_n_proc_DA

__all__ = ["get_allowed_n_proc_DA"]
