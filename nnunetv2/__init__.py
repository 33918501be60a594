"""nnunetv2: a drop-in reimplementation of nnU-Net v2 (2.8.1)."""
__version__ = "2.8.1.post0"
