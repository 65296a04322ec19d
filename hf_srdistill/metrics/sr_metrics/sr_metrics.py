"""PSNR / SSIM / LPIPS for super-resolution as a Hugging Face ``evaluate`` metric.

Load it by path so it plugs into Hugging Face evaluation code without the Hub::

    import evaluate
    from hf_srdistill.metrics import SR_METRICS_PATH
    metric = evaluate.load(SR_METRICS_PATH)
    metric.compute(predictions=[sr, ...], references=[hr, ...], crop_border=4)

Images are HWC uint8 RGB arrays (or PIL RGB images). They are stored as lossless PNG by the
``datasets.Image`` feature, so batches of different sizes can be added; the numbers are
exactly those of :func:`hf_srdistill.metrics.psnr` / :func:`~hf_srdistill.metrics.ssim`
(BasicSR conventions), averaged over images.
"""

import datasets
import evaluate
import numpy as np

from hf_srdistill.metrics.lpips import LPIPSMetric
from hf_srdistill.metrics.psnr_ssim import psnr, ssim

_DESCRIPTION = """\
Image-quality metrics for super-resolution with the conventions of SR papers (BasicSR and
the MATLAB scripts): PSNR and SSIM on the Y channel of BT.601 YCbCr (or on RGB), in float64,
after removing `crop_border` pixels (usually the scale) from every side; SSIM uses an 11x11
Gaussian window (sigma 1.5) over the valid region. LPIPS (AlexNet, v0.1) is added when the
AlexNet weights are in the torch hub cache, otherwise it is reported as None together with
the reason.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of HWC uint8 RGB images (super-resolved).
    references: list of HWC uint8 RGB images (ground truth), same shapes as predictions.
    crop_border (int): pixels removed from each side before measuring (default 0).
    test_y_channel (bool): PSNR/SSIM on the Y channel (default True) or on RGB.
    lpips (bool): also compute LPIPS on RGB (default True).
Returns:
    psnr: mean PSNR in dB; ssim: mean SSIM; lpips: mean LPIPS or None when unavailable;
    num_images; lpips_missing_reason (only when LPIPS was asked for but is unavailable).
"""

_CITATION = """\
@article{wang2004ssim, title={Image quality assessment: from error visibility to structural similarity},
  author={Wang, Zhou and Bovik, Alan C. and Sheikh, Hamid R. and Simoncelli, Eero P.},
  journal={IEEE Transactions on Image Processing}, volume={13}, number={4}, pages={600--612}, year={2004}}
@inproceedings{zhang2018lpips, title={The Unreasonable Effectiveness of Deep Features as a Perceptual Metric},
  author={Zhang, Richard and Isola, Phillip and Efros, Alexei A. and Shechtman, Eli and Wang, Oliver},
  booktitle={CVPR}, year={2018}}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SrMetrics(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Image(), "references": datasets.Image()}),
            reference_urls=["https://github.com/XPixelGroup/BasicSR", "https://github.com/richzhang/PerceptualSimilarity"],
        )

    def _compute(self, predictions, references, crop_border: int = 0, test_y_channel: bool = True,
                 lpips: bool = True) -> dict:
        if len(predictions) == 0:
            raise ValueError("sr_metrics: no images were added")
        preds = [np.asarray(p) for p in predictions]
        refs = [np.asarray(r) for r in references]
        result = {
            "psnr": float(np.mean([psnr(p, r, crop_border, test_y_channel) for p, r in zip(preds, refs)])),
            "ssim": float(np.mean([ssim(p, r, crop_border, test_y_channel) for p, r in zip(preds, refs)])),
            "lpips": None,
            "num_images": len(preds),
        }
        if lpips:
            if getattr(self, "_lpips", None) is None:
                self._lpips = LPIPSMetric()
            if self._lpips.available:
                result["lpips"] = float(np.mean([self._lpips(p, r, crop_border) for p, r in zip(preds, refs)]))
            else:
                result["lpips_missing_reason"] = self._lpips.missing_reason
        return result
