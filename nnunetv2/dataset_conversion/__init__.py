"""Turning datasets from other layouts (Medical Segmentation Decathlon, nnU-Net v1) into nnU-Net v2 raw datasets."""
