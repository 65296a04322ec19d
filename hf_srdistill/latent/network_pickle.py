"""Loading StyleGAN(-XL) network pickles: local file, URL or Hub file, plus their source tree.

Official pickles store code that imports ``torch_utils``/``dnnlib`` (and, for the
discriminator, ``pg_modules``/``timm``) from the StyleGAN-XL source tree, so that tree is
put on ``sys.path`` only while unpickling. Pickles run code when loaded: use files from a
source you trust.
"""

from __future__ import annotations

import pickle
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from hf_srdistill.config import LatentConfig
from hf_srdistill.io import sha256_file
from hf_srdistill.latent.base import GeneratorNotFoundError

CONTRACT = ("z_dim", "c_dim", "w_dim", "num_ws", "img_resolution", "mapping", "synthesis")
HOWTO = ("StyleGAN-XL needs (1) a network pickle: download e.g. imagenet512.pkl from "
         "https://s3.eu-central-1.amazonaws.com/avg-projects/stylegan_xl/models/imagenet512.pkl and set "
         "latent.generator=/path/to/imagenet512.pkl (or a URL, or a Hub repo id with latent.filename); "
         "(2) the source tree its pickles import: git clone https://github.com/autonomousvision/stylegan-xl, "
         "set latent.source_dir to the clone and install its requirements (e.g. timm).")



def resolve_pickle(cfg: LatentConfig) -> Path:
    """The local pickle for ``cfg.generator``: a file, a downloaded URL, or a Hub file."""
    ref = cfg.generator
    if not ref:
        raise GeneratorNotFoundError(f"latent.generator is not set. {HOWTO}")
    if ref.startswith(("http://", "https://")):
        dest = Path(torch.hub.get_dir()) / "checkpoints" / Path(ref).name
        if not dest.is_file():
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(ref, str(dest))
            except OSError as err:
                raise GeneratorNotFoundError(f"could not download {ref} ({err}). {HOWTO}") from err
        return dest
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    if cfg.filename:
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(repo_id=ref, filename=cfg.filename, revision=cfg.revision))
        except Exception as err:  # offline, missing repo/file, bad id: one message for all
            raise GeneratorNotFoundError(f"could not get {cfg.filename!r} from the Hub repo {ref!r} "
                                         f"({type(err).__name__}: {err}). {HOWTO}") from err
    raise GeneratorNotFoundError(f"no StyleGAN-XL network pickle at {path}. {HOWTO}")


@contextmanager
def import_path(source_dir: str | None) -> Iterator[None]:
    """Make ``source_dir`` importable for the duration of the block only."""
    if source_dir is None:
        yield
        return
    path = Path(source_dir).expanduser().resolve()
    if not path.is_dir():
        raise GeneratorNotFoundError(f"latent.source_dir={source_dir} is not a directory. {HOWTO}")
    sys.path.insert(0, str(path))
    try:
        yield
    finally:
        if str(path) in sys.path:
            sys.path.remove(str(path))


def load_network(cfg: LatentConfig) -> tuple[nn.Module, dict[str, Any]]:
    """``G_ema`` from the configured pickle, plus a record of where it came from."""
    path = resolve_pickle(cfg)
    with import_path(cfg.source_dir), open(path, "rb") as f:
        try:
            data = pickle.load(f)
        except ModuleNotFoundError as err:
            raise GeneratorNotFoundError(f"unpickling {path} needs the module {err.name!r}, which comes from "
                                         f"the StyleGAN-XL source tree or its requirements. {HOWTO}") from err
    if not isinstance(data, dict) or "G_ema" not in data:
        raise ValueError(f"{path} is not a StyleGAN network pickle (expected a dict with 'G_ema')")
    G = data["G_ema"]
    missing = [a for a in CONTRACT if not hasattr(G, a)]
    if missing:
        raise ValueError(f"{path}: G_ema lacks the StyleGAN generator attributes {missing}")
    record = {"generator": cfg.generator, "filename": cfg.filename, "revision": cfg.revision,
              "sha256": sha256_file(path), "class": f"{type(G).__module__}.{type(G).__qualname__}"}
    return G, record
