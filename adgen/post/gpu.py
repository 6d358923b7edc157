"""Post-processing on the renderer's device (``backend.post: gpu``), for pools short of CPUs.

The layout is decided on the CPU exactly as :func:`adgen.post.compose` decides it (framing,
logo variant and plate, caption sizes, colours, scrims), reading only the pixels that the
decisions need, behind the logo and around the captions (:func:`compose_layers` with
``sparse``); the logo and caption layers are rasterised there, once per ad. What costs per pixel
runs in torch where the render already is: the picture's one resample (antialiased bicubic with
Pillow's weights, :class:`adgen.post.resample.Grid`), the brand panel, the layers laid over it
and JPEG encoding with nvJPEG (``torchvision.io.encode_jpeg`` on CUDA tensors). PNG and WebP,
and JPEG where torchvision or CUDA is missing, are encoded by Pillow.

The same code runs on a CPU (the tests), where it matches the Pillow path within 1/255.
torchvision is imported only when a CUDA tensor is encoded; it is not a dependency of adgen
(PyPI's wheels pull a CUDA build of torch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from adgen.placements import Placement
from adgen.post import color, crop, encode
from adgen.post.image import DEFAULT_PRIMARY, Caption, compose_layers
from adgen.post.logo import LogoStyle
from adgen.post.resample import grid

if TYPE_CHECKING:
    import torch

Box = tuple[int, int, int, int]


@dataclass
class DeviceAd:
    """A finished ad on the device: ``pixels`` (3xHxW uint8), where the logo and each
    caption went and the decisions taken, as :class:`adgen.post.Composed` has them."""

    pixels: torch.Tensor
    logo_box: Box | None
    caption_boxes: dict[str, Box]
    checks: dict[str, object] = field(default_factory=dict)

    def image(self) -> Image.Image:
        """The ad as a Pillow image (copied to the CPU)."""
        return to_image(self.pixels)


def to_tensor(image: Image.Image, device: torch.device | str = "cpu") -> torch.Tensor:
    """An RGB(A) Pillow image as a CxHxW uint8 tensor on ``device``."""
    import torch

    array = np.array(image)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous().to(device)


def on_device(image: Image.Image, device: torch.device | str,
              pixels: torch.Tensor | None = None) -> torch.Tensor:
    """A render as 3xHxW uint8 on ``device``: ``pixels``, the renderer's copy where it made it
    (moved only when that is another device), or else ``image`` sent there."""
    if pixels is not None:
        return pixels.to(device)
    return to_tensor(image.convert("RGB"), device)


def to_image(pixels: torch.Tensor) -> Image.Image:
    """A 3xHxW uint8 tensor (any device) as an RGB Pillow image."""
    return Image.fromarray(pixels.permute(1, 2, 0).contiguous().cpu().numpy())


def _scaled(pixels: torch.Tensor, box: crop.Window, size: tuple[int, int],
            fallback: Callable[[], Image.Image]) -> torch.Tensor:
    """``box`` of ``pixels`` (1x3xHxW float) scaled to ``size`` on their device; where
    torch's grid cannot be aligned to the window's, ``fallback()`` (Pillow) made on the CPU."""
    plan = grid((pixels.shape[-1], pixels.shape[-2]), box, size)
    if plan is None:
        return to_tensor(fallback(), pixels.device).unsqueeze(0).float()
    return plan.run(pixels)


def picture(pixels: torch.Tensor, image: Image.Image, window: crop.Window,
            size: tuple[int, int]) -> torch.Tensor:
    """:func:`adgen.post.crop.render_window` on the device: ``window`` of the render scaled
    to ``size``, the picture's edges continued past them. ``pixels`` (3xHxW) and ``image``
    (the same render on the CPU, read for the small backdrop) hold the render; returns
    1x3xHxW float (0-255)."""
    source = pixels.unsqueeze(0).float()
    src, dest = crop.visible_part(image.size, window, size)
    if dest is None:
        return _scaled(source, src, size, lambda: crop.render_window(image, window, size))
    small = crop.backdrop(image, window, size)
    whole = (0.0, 0.0, float(small.width), float(small.height))
    out = _scaled(to_tensor(small, pixels.device).unsqueeze(0).float(), whole, size,
                  lambda: crop.render_window(image, window, size))
    width, height = dest[2] - dest[0], dest[3] - dest[1]
    if width > 0 and height > 0 and src[2] > src[0] and src[3] > src[1]:
        part = _scaled(source, src, (width, height),
                       lambda: crop.render_window(image, window, size).crop(dest))
        out[..., dest[1]:dest[3], dest[0]:dest[2]] = part
    return out


def lay_over(canvas: torch.Tensor, layer: Image.Image | None) -> None:
    """Lay the RGBA ``layer`` (the canvas's size) over ``canvas`` (1x3xHxW float, 0-255) in
    place, as ``Image.alpha_composite`` does; only its visible box is sent to the device."""
    if layer is None:
        return
    box = layer.getchannel("A").getbbox()
    if box is None:
        return
    part = to_tensor(layer.crop(box), canvas.device).float()
    alpha = part[3:] / 255.0
    region = canvas[0, :, box[1]:box[3], box[0]:box[2]]
    canvas[0, :, box[1]:box[3], box[0]:box[2]] = part[:3] * alpha + region * (1.0 - alpha)


def compose_on(pixels: torch.Tensor, image: Image.Image, placement: Placement, *,
               subject_box: Box | None = None, logo: LogoStyle | None = None,
               captions: Sequence[Caption] = (), colors: Sequence[str] = (),
               font: Path | None = None) -> DeviceAd:
    """:func:`adgen.post.compose` with the pixels made on ``pixels``' device: ``pixels`` is
    the render as 3xHxW uint8 there, ``image`` the same render on the CPU (the layout reads a
    few of its pixels)."""
    import torch

    source = image if image.mode == "RGB" else image.convert("RGB")
    layers = compose_layers(source, placement, subject_box=subject_box, logo=logo,
                            captions=captions, colors=colors, font=font, sparse=True)
    checks = layers.composed.checks
    box = checks["picture_box"]
    assert isinstance(box, tuple)
    fill = color.parse_color(colors[0]) if colors else color.parse_color(DEFAULT_PRIMARY)
    canvas = torch.tensor(fill, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    canvas = canvas.expand(1, 3, placement.height, placement.width).clone()
    canvas[..., box[1]:box[3], box[0]:box[2]] = picture(
        pixels, source, layers.window, (box[2] - box[0], box[3] - box[1]))
    for layer in [layers.logo, *layers.captions.values()]:
        lay_over(canvas, layer)
    out = canvas[0].round_().clamp_(0, 255).to(torch.uint8)
    composed = layers.composed
    return DeviceAd(out, composed.logo_box, composed.caption_boxes, composed.checks)


@cache
def _nvjpeg() -> Callable[..., torch.Tensor] | None:
    """torchvision's ``encode_jpeg`` when torchvision imports and works beside this torch."""
    try:
        from torchvision.io import encode_jpeg
    except (ImportError, RuntimeError, OSError):  # absent, or built for another torch
        return None
    return encode_jpeg


def device_jpeg(pixels: torch.Tensor) -> Callable[[int], bytes] | None:
    """A JPEG encoder at a given quality for ``pixels`` (3xHxW uint8) on their device, when
    there is one: nvJPEG for CUDA tensors. None elsewhere (Pillow encodes)."""
    encoder = _nvjpeg() if pixels.device.type == "cuda" else None
    if encoder is None:
        return None

    def save(quality: int) -> bytes:
        return bytes(encoder(pixels, quality=quality).cpu().numpy().tobytes())

    return save


def encode_on(pixels: torch.Tensor, fmt: encode.Format, *, max_bytes: int | None = None
              ) -> bytes:
    """:func:`adgen.post.encode_image` for an ad on the device: JPEG by nvJPEG on CUDA (within
    the byte budget by the same search), else Pillow on a copy on the CPU."""
    kind = encode.checked_format(fmt, max_bytes)
    save = device_jpeg(pixels) if kind == "jpeg" else None
    if save is None:
        return encode.encode_image(to_image(pixels), fmt, max_bytes=max_bytes)
    size = (pixels.shape[-1], pixels.shape[-2])
    return encode.budgeted(save, "jpeg", size, max_bytes)
