"""Regenerate the example brand assets in examples/assets/ (run once, from the repo root).

Draws three product cut-outs (PNG with transparency: a sneaker, a bottle, a mug) and the logo
of the example brand "Northwind" (dark and white variants) with Pillow. Shapes are drawn at
twice the size and scaled down, which anti-aliases their edges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).parent / "assets"
SS = 2  # supersampling factor
NAVY, GOLD, WHITE = (11, 61, 145), (242, 169, 0), (255, 255, 255)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans Bold (adgen's bundled copy, the system's or matplotlib's), else Pillow's."""
    candidates = [Path(__file__).parents[1] / "adgen" / "fonts",
                  Path("/usr/share/fonts/truetype/dejavu")]
    try:
        import matplotlib

        candidates.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf")
    except ImportError:
        pass
    for folder in candidates:
        for path in sorted(folder.rglob("DejaVuSans-Bold.ttf")) if folder.is_dir() else []:
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def _cylinder_shade(size: tuple[int, int], colour: tuple[int, int, int],
                    highlight: float = 0.35) -> Image.Image:
    """A horizontally shaded fill: darker edges, a highlight left of centre (a lit cylinder)."""
    w, h = size
    x = np.linspace(-1.0, 1.0, w, dtype=np.float32)
    light = 0.62 + 0.38 * (1 - np.clip(((x + 0.3) / 1.15) ** 2, 0, 1))
    light += highlight * np.exp(-(((x + 0.45) / 0.14) ** 2))
    rgb = np.clip(np.array(colour, np.float32)[None, :] * light[:, None]
                  + 255 * np.clip(light - 1, 0, None)[:, None], 0, 255)
    row = rgb.astype(np.uint8)[None, :, :]
    return Image.fromarray(np.repeat(row, h, axis=0), "RGB")


def _finish(canvas: Image.Image) -> Image.Image:
    """Scale the supersampled drawing down and crop to its visible pixels plus a small margin."""
    small = canvas.resize((canvas.width // SS, canvas.height // SS), Image.Resampling.LANCZOS)
    box = small.getchannel("A").getbbox()
    assert box is not None
    m = 6
    return small.crop((box[0] - m, box[1] - m, box[2] + m, box[3] + m))


def sneaker() -> Image.Image:
    """A side-view running shoe: coloured upper, toe cap, contrast swoosh-free panel, laces."""
    w, h = 660 * SS, 320 * SS
    im = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)

    def p(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(x * SS, y * SS) for x, y in pts]

    red, dark_red, ink = (228, 70, 52, 255), (196, 52, 40, 255), (38, 42, 54, 255)
    # upper: heel counter on the left, collar, tongue, then the vamp sloping to a round toe
    d.polygon(p([(74, 258), (66, 200), (74, 150), (92, 118), (120, 104), (160, 108),
                 (192, 124), (214, 116), (240, 96), (268, 96), (280, 112), (300, 138),
                 (360, 156), (430, 170), (500, 184), (560, 198), (600, 214), (622, 236),
                 (626, 258)]), fill=red)
    d.polygon(p([(240, 96), (268, 96), (280, 112), (262, 128), (238, 122)]), fill=ink)  # tongue
    d.polygon(p([(92, 118), (120, 104), (160, 108), (192, 124), (170, 136), (130, 126),
                 (102, 134)]), fill=ink)  # collar lining
    d.polygon(p([(66, 200), (74, 150), (92, 122), (110, 170), (108, 258), (74, 258)]),
              fill=dark_red)  # heel counter
    d.polygon(p([(520, 190), (560, 198), (600, 214), (622, 236), (626, 258), (500, 258),
                 (498, 226)]), fill=dark_red)  # toe cap
    # a sweeping contrast panel from the heel to the vamp
    d.polygon(p([(120, 238), (210, 206), (320, 184), (430, 182), (480, 188), (420, 200),
                 (320, 208), (230, 226), (150, 250)]), fill=(255, 255, 255, 255))
    # laces and eyelets along the vamp
    for i in range(6):
        x, y = 268 + i * 38, 132 + i * 8.5
        d.line(p([(x - 14, y - 8), (x + 20, y + 12)]), fill=(250, 250, 250, 255),
               width=6 * SS)
        d.ellipse((SS * (x - 19), SS * (y + 8), SS * (x - 12), SS * (y + 15)), fill=ink)
    # sole: thick white midsole with toe spring, dark outsole
    d.polygon(p([(60, 250), (610, 250), (636, 246), (646, 256), (634, 272), (600, 282),
                 (80, 292), (58, 282)]), fill=(246, 246, 242, 255))
    d.polygon(p([(62, 284), (600, 276), (630, 270), (624, 284), (598, 294), (82, 302),
                 (64, 296)]), fill=(62, 64, 74, 255))
    d.line(p([(96, 268), (590, 262)]), fill=(210, 210, 206, 255), width=3 * SS)
    return _finish(im)


def bottle() -> Image.Image:
    """An insulated water bottle: shaded body, cap, label band with a mark."""
    w, h = 240 * SS, 640 * SS
    im = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    body = Image.new("L", (w, h), 0)
    bd = ImageDraw.Draw(body)
    bd.rounded_rectangle((30 * SS, 150 * SS, 210 * SS, 620 * SS), radius=40 * SS, fill=255)
    bd.rounded_rectangle((60 * SS, 110 * SS, 180 * SS, 200 * SS), radius=30 * SS, fill=255)
    bd.rectangle((75 * SS, 80 * SS, 165 * SS, 130 * SS), fill=255)
    im.paste(_cylinder_shade((w, h), (20, 138, 138), 0.18), (0, 0), body)
    cap = Image.new("L", (w, h), 0)
    ImageDraw.Draw(cap).rounded_rectangle((68 * SS, 20 * SS, 172 * SS, 95 * SS),
                                          radius=14 * SS, fill=255)
    im.paste(_cylinder_shade((w, h), (45, 48, 58), 0.2), (0, 0), cap)
    band = Image.new("L", (w, h), 0)
    ImageDraw.Draw(band).rectangle((30 * SS, 330 * SS, 210 * SS, 450 * SS), fill=255)
    band = Image.composite(band, Image.new("L", (w, h), 0), body)
    im.paste(_cylinder_shade((w, h), (246, 244, 238), 0.15), (0, 0), band)
    d = ImageDraw.Draw(im)
    d.polygon([(120 * SS, 352 * SS), (146 * SS, 420 * SS), (120 * SS, 404 * SS),
               (94 * SS, 420 * SS)], fill=(*NAVY, 255))
    return _finish(im)


def mug() -> Image.Image:
    """A ceramic mug: shaded cylinder, darker rim, handle."""
    w, h = 560 * SS, 460 * SS
    im = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    colour = (243, 190, 60)
    d = ImageDraw.Draw(im)
    d.ellipse((330 * SS, 130 * SS, 500 * SS, 340 * SS), outline=(214, 160, 40, 255),
              width=38 * SS)
    body = Image.new("L", (w, h), 0)
    bd = ImageDraw.Draw(body)
    bd.rectangle((60 * SS, 60 * SS, 380 * SS, 400 * SS), fill=255)
    bd.ellipse((60 * SS, 370 * SS, 380 * SS, 430 * SS), fill=255)
    im.paste(_cylinder_shade((w, h), colour, 0.08), (0, 0), body)
    d.ellipse((60 * SS, 30 * SS, 380 * SS, 90 * SS), fill=(196, 140, 30, 255))
    d.ellipse((74 * SS, 38 * SS, 366 * SS, 84 * SS), fill=(90, 56, 30, 255))
    d.arc((60 * SS, 30 * SS, 380 * SS, 90 * SS), 0, 180, fill=(255, 222, 140, 255),
          width=4 * SS)
    return _finish(im)


def logo(colour: tuple[int, int, int], accent: tuple[int, int, int]) -> Image.Image:
    """Northwind: a compass-needle mark in a ring, and the wordmark."""
    font = _font(96 * SS)
    text = "Northwind"
    tw = ImageDraw.Draw(Image.new("L", (1, 1))).textlength(text, font=font)
    mark = 120 * SS
    w, h = int(mark + 36 * SS + tw + 20 * SS), 140 * SS
    im = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    cx, cy, r = 10 * SS + mark / 2, h / 2, mark / 2
    d.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(*colour, 255), width=9 * SS)
    n = [(cx, cy - r * 0.72), (cx + r * 0.3, cy), (cx - r * 0.3, cy)]
    s = [(cx, cy + r * 0.72), (cx + r * 0.3, cy), (cx - r * 0.3, cy)]
    d.polygon(n, fill=(*accent, 255))
    d.polygon(s, fill=(*colour, 255))
    d.text((mark + 36 * SS, cy), text, font=font, fill=(*colour, 255), anchor="lm")
    return _finish(im)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    assets = {
        "sneaker.png": sneaker(),
        "bottle.png": bottle(),
        "mug.png": mug(),
        "logo.png": logo(NAVY, GOLD),
        "logo_light.png": logo(WHITE, WHITE),
    }
    for name, image in assets.items():
        image.save(OUT / name, optimize=True)
        print(f"{OUT / name}: {image.width}x{image.height}")


if __name__ == "__main__":
    main()
