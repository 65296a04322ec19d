"""A tiny generator with the StyleGAN3 / StyleGAN-XL network contract, for tests and smoke runs.

Same attributes and call shapes as ``G_ema`` in an official pickle: ``z_dim``, ``c_dim``,
``w_dim``, ``num_ws``, ``img_resolution``, ``mapping(z, c) -> (N, num_ws, w_dim)``,
``synthesis(ws) -> (N, 3, R, R)`` in about [-1, 1], and a synthesis network made of
``input(w0)`` followed by the layers named in ``layer_names``, each called as
``layer(x, w)``, then ``output_scale``. It is imported by its bare module name (this folder
on ``sys.path``), like the StyleGAN-XL source tree, so its pickles exercise the real
loading path.

Run as a script to write a pickle: ``python tests/latent/support/tiny_stylegan_net.py OUT.pkl``.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class MappingNetwork(nn.Module):
    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.embed = nn.Linear(c_dim, z_dim) if c_dim else None
        self.fc0 = nn.Linear(z_dim * (2 if c_dim else 1), w_dim)
        self.fc1 = nn.Linear(w_dim, w_dim)

    def forward(self, z, c, truncation_psi=1.0, truncation_cutoff=None, update_emas=False):
        x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        if self.c_dim:
            y = self.embed(c.float())
            x = torch.cat([x, y * (y.square().mean(1, keepdim=True) + 1e-8).rsqrt()], dim=1)
        x = F.leaky_relu(self.fc1(F.leaky_relu(self.fc0(x), 0.2)), 0.2)
        return x.unsqueeze(1).repeat(1, self.num_ws, 1)


class SynthesisInput(nn.Module):
    def __init__(self, w_dim: int, channels: int, size: int) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.randn(channels, size, size))
        self.affine = nn.Linear(w_dim, channels)

    def forward(self, w):
        return self.const.unsqueeze(0) * (1 + self.affine(w))[:, :, None, None]


class SynthesisLayer(nn.Module):
    """3x3 conv (optional 2x upsampling first), instance norm, per-channel style scale/bias
    from w (StyleGAN1's AdaIN: keeps activations at unit scale so w visibly changes the image).
    The ToRGB layer is a 1x1 conv of the style-scaled input."""

    def __init__(self, w_dim: int, in_ch: int, out_ch: int, up: bool, is_torgb: bool = False) -> None:
        super().__init__()
        self.up, self.is_torgb = up, is_torgb
        self.affine = nn.Linear(w_dim, in_ch if is_torgb else 2 * out_ch)
        self.conv = nn.Conv2d(in_ch, out_ch, 1 if is_torgb else 3, padding=0 if is_torgb else 1)

    def forward(self, x, w, **layer_kwargs):
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        style = self.affine(w)[:, :, None, None]
        if self.is_torgb:
            return self.conv(x * (1 + style))
        scale, bias = style.chunk(2, dim=1)
        return F.leaky_relu(F.instance_norm(self.conv(x)) * (1 + scale) + bias, 0.2)


class SynthesisNetwork(nn.Module):
    def __init__(self, w_dim: int, img_resolution: int, channels: int = 16) -> None:
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, 3
        self.input = SynthesisInput(w_dim, channels, img_resolution // 4)
        specs = [(channels, channels, True), (channels, channels, True), (channels, channels, False)]
        self.layer_names = []
        for idx, (cin, cout, up) in enumerate(specs):
            name = f"L{idx}_{cout}"
            setattr(self, name, SynthesisLayer(w_dim, cin, cout, up))
            self.layer_names.append(name)
        setattr(self, "L3_rgb", SynthesisLayer(w_dim, channels, 3, False, is_torgb=True))
        self.layer_names.append("L3_rgb")
        self.num_ws = len(self.layer_names) + 1
        self.output_scale = 0.5

    def forward(self, ws, **layer_kwargs):
        assert ws.shape[1:] == (self.num_ws, self.w_dim), ws.shape
        ws = ws.float().unbind(1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, **layer_kwargs)
        return (x * self.output_scale).float()


class Generator(nn.Module):
    def __init__(self, z_dim: int = 8, c_dim: int = 0, w_dim: int = 8, img_resolution: int = 16,
                 channels: int = 16) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, 3
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, channels)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws)

    def forward(self, z, c, **kwargs):
        return self.synthesis(self.mapping(z, c))


def write_pickle(path: str, seed: int = 0, **kwargs) -> None:
    """Pickle ``{'G_ema': Generator(**kwargs)}`` like an official network file."""
    torch.manual_seed(seed)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({"G_ema": Generator(**kwargs).eval()}, f)


if __name__ == "__main__":
    import tiny_stylegan_net  # this file by its bare name, so the pickle does not reference __main__

    tiny_stylegan_net.write_pickle(sys.argv[1], img_resolution=int(sys.argv[2]) if len(sys.argv) > 2 else 32)
