"""Dataset distillation for SR: gradient matching in pixel space, set export, baselines."""

from hf_srdistill.distill.baselines import make_baseline_set
from hf_srdistill.distill.export import write_image_set
from hf_srdistill.distill.loop import DistillationDiverged, distill

__all__ = ["distill", "write_image_set", "make_baseline_set", "DistillationDiverged"]
