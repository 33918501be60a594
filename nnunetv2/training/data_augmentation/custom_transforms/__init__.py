"""Batch-level transforms in the batchgenerators (v1) style that nnU-Net shipped before batchgeneratorsv2.

The default pipelines no longer use them (see ``pipelines.py``); they stay importable for older custom trainers.
Each works on a batch dict with ``'data'`` / ``'seg'`` arrays of shape ``(b, c, *spatial)``.
"""
