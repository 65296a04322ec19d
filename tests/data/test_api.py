"""The public data API is importable from hf_srdistill.data."""

import hf_srdistill.data as data


def test_public_names_resolve():
    for name in data.__all__:
        assert getattr(data, name) is not None, name
    assert issubclass(data.DataNotFoundError, FileNotFoundError)
    assert issubclass(data.CorruptImageError, ValueError)
