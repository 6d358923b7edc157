"""Video frames as BT.709 Y'CbCr 4:2:0 planes: the form x264 encodes, made with OpenCV.

A frame is one buffer, the luma plane (W x H) then the two chroma planes (W/2 x H/2): what
ffmpeg reads as ``rawvideo`` ``yuv420p``, so it converts nothing and half the bytes go down the
pipe. Every picture is converted once (:class:`Planes`: limited range, chroma averaged over
2x2 pixels); a frame then costs a subpixel bilinear warp of the moving picture's planes (the
chroma at half size), the layers blended over their boxes (:class:`Overlay`) and a crossfade,
about 1.5 ms of CPU at 1080x1920, where an RGB frame cost ffmpeg about 7 ms to convert.

The conversion is linear, so blending in Y'CbCr gives the colours blending in RGB gives (up to
rounding); a layer's chroma is blended at half size from its averages weighted by alpha, so
antialiased edges keep their colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from adgen.post.resample import Box, Window, warp

KR, KB = 0.2126, 0.0722
"""BT.709's luma weights of red and blue."""


def _matrix() -> np.ndarray:
    """RGB (0-255) to limited-range Y'CbCr (Y 16-235, Cb and Cr 16-240), as OpenCV's 3x4
    ``transform`` matrix."""
    kg = 1.0 - KR - KB
    luma = np.array([KR, kg, KB])
    blue = (np.array([0.0, 0.0, 1.0]) - luma) / (2 * (1 - KB))
    red = (np.array([1.0, 0.0, 0.0]) - luma) / (2 * (1 - KR))
    rows = [luma * 219 / 255, blue * 224 / 255, red * 224 / 255]
    return np.column_stack([np.array(rows), [16.0, 128.0, 128.0]]).astype(np.float32)


BT709 = _matrix()
TO_RGB = np.column_stack([np.linalg.inv(BT709[:, :3]),
                          -np.linalg.inv(BT709[:, :3]) @ BT709[:, 3]]).astype(np.float32)
"""The inverse of :data:`BT709`: limited-range Y'CbCr to RGB (0-255)."""


def _half(size: tuple[int, int]) -> tuple[int, int]:
    return (size[0] + 1) // 2, (size[1] + 1) // 2


def _even(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` with its last row and column repeated where its sides are odd."""
    bottom, right = rgb.shape[0] % 2, rgb.shape[1] % 2
    if not bottom and not right:
        return rgb
    return cv2.copyMakeBorder(rgb, 0, bottom, 0, right, cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class Planes:
    """A picture as Y'CbCr planes: ``y`` at full size, ``u`` (Cb) and ``v`` (Cr) at half
    size (rounded up), uint8."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @classmethod
    def of(cls, picture: Image.Image | np.ndarray) -> Planes:
        """An RGB picture (Pillow image or HxWx3 uint8 array), converted."""
        rgb = np.asarray(picture)
        ycc = cv2.transform(rgb, BT709)
        half = _half((rgb.shape[1], rgb.shape[0]))
        chroma = cv2.resize(_even(ycc), half, interpolation=cv2.INTER_AREA)
        return cls(np.ascontiguousarray(ycc[..., 0]), np.ascontiguousarray(chroma[..., 1]),
                   np.ascontiguousarray(chroma[..., 2]))

    @property
    def size(self) -> tuple[int, int]:
        return self.y.shape[1], self.y.shape[0]


class Frame:
    """One frame's buffer (:attr:`data`, ready for the pipe) and its three planes, views of
    it. Sides must be even."""

    def __init__(self, size: tuple[int, int]) -> None:
        width, height = size
        luma, chroma = width * height, width * height // 4
        self.data = np.empty(luma + 2 * chroma, np.uint8)
        self.y = self.data[:luma].reshape(height, width)
        self.u = self.data[luma:luma + chroma].reshape(height // 2, width // 2)
        self.v = self.data[luma + chroma:].reshape(height // 2, width // 2)

    @classmethod
    def of(cls, planes: Planes) -> Frame:
        """A frame holding ``planes`` (of an even size)."""
        frame = cls(planes.size)
        frame.fill(planes)
        return frame

    def fill(self, planes: Planes) -> None:
        """Copy ``planes`` (the frame's size) in."""
        for mine, theirs in self._pairs(planes):
            np.copyto(mine, theirs)

    def warp(self, source: Planes, window: Window, box: Box) -> None:
        """``window`` of ``source`` (its pixels) scaled into ``box`` of the frame, bilinear and
        subpixel-exact; the chroma from ``source``'s half-size planes, sampled where the
        frame's chroma sits."""
        width, height = box[2] - box[0], box[3] - box[1]
        warp(source.y, window, (width, height), out=self.y[box[1]:box[3], box[0]:box[2]])
        step_x = (window[2] - window[0]) / width
        step_y = (window[3] - window[1]) / height
        chroma = (box[0] // 2, box[1] // 2, (box[2] + 1) // 2, (box[3] + 1) // 2)
        size = (chroma[2] - chroma[0], chroma[3] - chroma[1])
        left = (window[0] + (2 * chroma[0] - box[0]) * step_x) / 2
        top = (window[1] + (2 * chroma[1] - box[1]) * step_y) / 2
        half = (left, top, left + size[0] * step_x, top + size[1] * step_y)
        for plane, out in ((source.u, self.u), (source.v, self.v)):
            warp(plane, half, size, out=out[chroma[1]:chroma[3], chroma[0]:chroma[2]])

    def fade_to(self, planes: Planes, strength: float) -> None:
        """Crossfade towards ``planes`` (the frame's size): ``strength`` 0 keeps the frame, 1
        gives ``planes``."""
        for mine, theirs in self._pairs(planes):
            cv2.addWeighted(mine, 1.0 - strength, theirs, strength, 0.0, dst=mine)

    def to_rgb(self) -> np.ndarray:
        """The frame as HxWx3 RGB (the chroma scaled up bilinear): for work made for RGB
        pictures (the invisible watermark), whose result :meth:`fill` takes back through
        :meth:`Planes.of`."""
        size = (self.y.shape[1], self.y.shape[0])
        chroma = [cv2.resize(plane, size, interpolation=cv2.INTER_LINEAR)
                  for plane in (self.u, self.v)]
        return cv2.transform(cv2.merge([self.y, *chroma]), TO_RGB)

    def _pairs(self, planes: Planes) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(self.y, planes.y), (self.u, planes.u), (self.v, planes.v)]


@dataclass(frozen=True)
class _Blend:
    """One plane's part of an overlay: its colour and opacity (0-1) over ``box``."""

    box: Box
    color: np.ndarray
    alpha: np.ndarray
    rest: np.ndarray
    """``1 - alpha``, kept for blends at full strength."""

    def over(self, plane: np.ndarray, strength: float) -> None:
        target = plane[self.box[1]:self.box[3], self.box[0]:self.box[2]]
        alpha, rest = self.alpha, self.rest
        if strength < 1:
            alpha = alpha * np.float32(strength)
            rest = 1.0 - alpha
        cv2.blendLinear(self.color, target, alpha, rest, dst=target)


@dataclass(frozen=True)
class Overlay:
    """An RGBA layer of a frame's size cut to its visible box (widened to even coordinates),
    converted once: luma and alpha at full size, chroma and alpha averaged at half size."""

    box: Box
    planes: tuple[_Blend, _Blend, _Blend]

    @classmethod
    def of(cls, layer: Image.Image | None) -> Overlay | None:
        """The layer's overlay; None when there is no layer or nothing shows in it."""
        if layer is None:
            return None
        found = layer.getchannel("A").getbbox()
        if found is None:
            return None
        box = (found[0] // 2 * 2, found[1] // 2 * 2, min(layer.width, (found[2] + 1) // 2 * 2),
               min(layer.height, (found[3] + 1) // 2 * 2))
        rgba = np.asarray(layer.crop(box))
        alpha = rgba[..., 3].astype(np.float32) / 255
        ycc = cv2.transform(rgba[..., :3].astype(np.float32), BT709)
        half = _half((box[2] - box[0], box[3] - box[1]))
        weighted = cv2.resize(_even(ycc * alpha[..., None]), half, interpolation=cv2.INTER_AREA)
        alpha_half = cv2.resize(_even(alpha), half, interpolation=cv2.INTER_AREA)
        chroma = weighted[..., 1:] / np.maximum(alpha_half, 1e-6)[..., None]
        luma = np.clip(np.rint(ycc[..., 0]), 0, 255).astype(np.uint8)
        cb, cr = np.clip(np.rint(chroma), 0, 255).astype(np.uint8).transpose(2, 0, 1)
        small = (box[0] // 2, box[1] // 2, box[0] // 2 + half[0], box[1] // 2 + half[1])
        return cls(box, (_Blend(box, luma, alpha, 1.0 - alpha),
                         _Blend(small, np.ascontiguousarray(cb), alpha_half, 1.0 - alpha_half),
                         _Blend(small, np.ascontiguousarray(cr), alpha_half, 1.0 - alpha_half)))

    def over(self, frame: Frame, strength: float) -> None:
        """Blend the layer over ``frame`` at ``strength`` (0-1)."""
        if strength <= 0:
            return
        for blend, plane in zip(self.planes, (frame.y, frame.u, frame.v), strict=True):
            blend.over(plane, strength)
