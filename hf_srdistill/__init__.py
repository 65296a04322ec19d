"""Dataset distillation for image super-resolution, on the Hugging Face stack.

``hf_srdistill.upscale(model, image) -> PIL.Image`` super-resolves one image with a saved
model (folder, Hub id or loaded ``SRModel``); it is imported on first use so that
``import hf_srdistill`` (and ``hf-srdistill --help``) stays free of torch.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "upscale"]


def __getattr__(name: str):
    if name == "upscale":
        import importlib

        return importlib.import_module("hf_srdistill.upscale")  # a callable module: upscale(model, image)
    raise AttributeError(f"module 'hf_srdistill' has no attribute {name!r}")
