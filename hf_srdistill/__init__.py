"""Dataset distillation for image super-resolution, on the Hugging Face stack."""

__version__ = "0.1.0"
