"""The one error every data loader raises when data is absent."""

from __future__ import annotations


class DataNotFoundError(FileNotFoundError):
    """Data is not where it was looked for; the message says where and how to supply it."""
