"""Data: image I/O, MATLAB-style bicubic, datasets and the Lightning DataModule."""
