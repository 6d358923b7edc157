"""Regenerate the example product catalog in examples/catalog/ (run once, from the repo root).

Writes 20 catalog photos (JPEG on a white studio background, no transparency, as product feeds
deliver them) made from the example brand's product drawings in several colours, a Google
Merchant Center XML feed describing them (two products out of stock, one whose photo is
missing, to show how adgen leaves products out), and an audience of 400 customers in four
languages (English, German, Arabic, Japanese), each with the product they last viewed.
"""

from __future__ import annotations

import colorsys
import random
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

HERE = Path(__file__).parent
ASSETS = HERE.parent / "assets"
SIZE = 640

SHAPES = {
    "sneaker": ("Trail runner", "Apparel & Accessories > Shoes", 89),
    "bottle": ("Insulated bottle", "Home & Garden > Kitchen > Drinkware", 29),
    "mug": ("Stoneware mug", "Home & Garden > Kitchen > Drinkware", 18),
}
COLOURS = {"coral": 0.02, "amber": 0.11, "lime": 0.22, "teal": 0.48, "cobalt": 0.6,
           "violet": 0.75, "berry": 0.9}
"""Colour names and the hue each product is painted in."""
LANGUAGES = {"en": 0.4, "de": 0.25, "ar": 0.15, "ja": 0.2}


def recolour(image: Image.Image, hue: float) -> Image.Image:
    """Paint every saturated pixel of an RGBA drawing in ``hue`` (greys and white stay)."""
    rgba = np.asarray(image.convert("RGBA")).astype(np.float32) / 255
    out = rgba.copy()
    flat = rgba[..., :3].reshape(-1, 3)
    hsv = np.array([colorsys.rgb_to_hsv(*p) for p in flat])
    hsv[:, 0] = np.where(hsv[:, 1] > 0.25, hue, hsv[:, 0])
    rgb = np.array([colorsys.hsv_to_rgb(*p) for p in hsv]).reshape((*rgba.shape[:2], 3))
    out[..., :3] = rgb
    return Image.fromarray((out * 255).round().astype(np.uint8), "RGBA")


def photo(drawing: Image.Image) -> Image.Image:
    """The drawing centred on a white studio background, flattened to RGB."""
    canvas = Image.new("RGB", (SIZE, SIZE), (252, 252, 252))
    scale = 0.78 * SIZE / max(drawing.size)
    item = drawing.resize((round(drawing.width * scale), round(drawing.height * scale)),
                          Image.Resampling.LANCZOS)
    canvas.paste(item, ((SIZE - item.width) // 2, (SIZE - item.height) // 2), item)
    return canvas


def main() -> None:
    (HERE / "images").mkdir(parents=True, exist_ok=True)
    items = []
    for shape, (title, kind, price) in SHAPES.items():
        base = Image.open(ASSETS / f"{shape}.png")
        for colour, hue in COLOURS.items():
            if len(items) == 20:
                break
            product_id = f"{shape}-{colour}"
            path = HERE / "images" / f"{product_id}.jpg"
            photo(recolour(base, hue)).save(path, "JPEG", quality=88)
            items.append((product_id, f"{title} – {colour}", kind, price))
    entries = []
    for number, (product_id, title, kind, price) in enumerate(items):
        availability = "out_of_stock" if number in (4, 11) else "in_stock"
        image = f"images/{product_id}.jpg" if number != 17 else "images/missing.jpg"
        sale = f"<g:sale_price>{price * 0.8:.2f} EUR</g:sale_price>" if number % 3 == 0 else ""
        entries.append(
            f"  <item>\n   <g:id>{product_id}</g:id>\n   <g:title>{escape(title)}</g:title>\n"
            f"   <g:description>{escape(title)} by Northwind</g:description>\n"
            f"   <g:brand>Northwind</g:brand>\n   <g:price>{price:.2f} EUR</g:price>{sale}\n"
            f"   <g:availability>{availability}</g:availability>\n"
            f"   <g:image_link>{image}</g:image_link>\n"
            f"   <g:product_type>{escape(kind)}</g:product_type>\n"
            f"   <g:link>https://shop.example.com/p/{product_id}</g:link>\n  </item>")
    (HERE / "feed.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0">\n <channel>\n'
        "  <title>Northwind products</title>\n" + "\n".join(entries) + "\n </channel>\n</rss>\n",
        encoding="utf-8")
    rng = random.Random(7)
    ids = [item[0] for item in items]
    lines = ["customer_id,language,viewed_product,views"]
    for number in range(1, 401):
        language = rng.choices(list(LANGUAGES), weights=list(LANGUAGES.values()))[0]
        # each language's shoppers favour a few products, so segments share variants
        viewed = rng.choice(ids[: 6 + 4 * list(LANGUAGES).index(language)])
        lines.append(f"K{number:05d},{language},{viewed},{rng.randint(1, 9)}")
    (HERE / "audience.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
