"""Data: image folders, multi-crop augmentation, region tensors, video runs, palettes and sample data."""
