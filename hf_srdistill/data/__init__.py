"""Data: sources, sub-images grouped by photo, MATLAB-bicubic degradation, patches.

Pipeline: ``iter_source_images`` (mini / folder / Hub / DIV2K / photos) -> ``extract_subimages``
(BasicSR's 480/240 grid; one photo = one class) -> ``SubImageStore`` (Arrow cache, class
offsets, reproducible patch sampling) -> ``PairedPatchDataset`` (LR = ``imresize`` of the
whole HR, aligned crops). ``load_test_set`` gives the benchmarks.
"""

from hf_srdistill.data.errors import DataNotFoundError
from hf_srdistill.data.grouped import SubImageStore
from hf_srdistill.data.images import (CorruptImageError, decode_image_bytes, load_image, mod_crop,
                                      to_rgb_uint8, to_tensor, to_uint8)
from hf_srdistill.data.imresize import bicubic_downscale, imresize, imresize_uint8
from hf_srdistill.data.mini import MINI_SPLITS, load_mini
from hf_srdistill.data.patches import PairedPatchDataset
from hf_srdistill.data.photos import prepare_photos
from hf_srdistill.data.sources import SourceReport, iter_source_images, source_fingerprint
from hf_srdistill.data.subimages import count_subimages, extract_subimages, subimage_positions
from hf_srdistill.data.testsets import TEST_SETS, load_test_set

__all__ = [
    "DataNotFoundError", "CorruptImageError", "SourceReport",
    "imresize", "imresize_uint8", "bicubic_downscale",
    "extract_subimages", "count_subimages", "subimage_positions",
    "to_rgb_uint8", "load_image", "decode_image_bytes", "mod_crop", "to_tensor", "to_uint8",
    "load_mini", "MINI_SPLITS", "prepare_photos",
    "iter_source_images", "source_fingerprint",
    "SubImageStore", "PairedPatchDataset",
    "load_test_set", "TEST_SETS",
]
