"""Data: sources, sub-images grouped by photo, MATLAB-bicubic degradation, patches."""

from hf_srdistill.data.imresize import imresize, imresize_uint8

__all__ = ["imresize", "imresize_uint8"]
