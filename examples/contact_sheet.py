"""A contact sheet of every example campaign's placements, as one PNG a person can judge.

For each campaign it renders one variant per creative and product (offline; ``--rows``, 2 by
default, per campaign), lays out every placement the campaign uses plus the display sizes
that are hardest to design for (story, 160x600, 300x600, 320x50, 970x250, 728x90), and
draws each ad at a common
height on a grey sheet, labelled with its placement and the layout chosen. Video creatives show
their first frame's layout (the still ad; the video keeps the same layout).

    .venv/bin/python examples/contact_sheet.py [campaigns/*.yaml] [--out contact_sheet.png]
        [--width 2400] [--small docs/contact_sheet_small.png]

With ``--run OUT``, the sheet shows a finished run's own assets instead (the files ``adgen
run`` wrote, nothing rendered again): ``--rows`` variants, the creatives in turn, for segments
that share no value where the run has such, in the ``--placements`` given. The README's
picture, after ``make demo``::

    .venv/bin/python examples/contact_sheet.py --run out/northwind-spring --rows 2 \
        --width 1390 --height 300 --out docs/demo_ads.webp
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

import adgen
from adgen.assets import brand_style
from adgen.errors import PostProcessError
from adgen.placements import aspect_class, resolve_placement
from adgen.post.image import Caption, compose
from adgen.post.text import REGULAR, load_font
from adgen.renderers.offline import OfflineRenderer

REPO = Path(__file__).resolve().parents[1]
EXTRA = ["story", "160x600", "300x600", "320x50", "970x250", "728x90"]


@dataclass
class Tile:
    image: Image.Image
    label: str


def ads_for(path: Path, limit: int = 2) -> list[tuple[str, list[Tile]]]:
    """One row of tiles per (creative, product) of the campaign at ``path``, at most
    ``limit`` rows."""
    campaign = adgen.load_campaign(path, overrides=["variants=1", "experiment.weights=null"])
    plan = adgen.plan(campaign)
    style = brand_style(campaign)
    renderer = OfflineRenderer()
    names = list(dict.fromkeys([s.placement for s in campaign.placements] + EXTRA))
    rows: list[tuple[str, list[Tile]]] = []
    seen: set[tuple[str, str]] = set()
    for variant in plan.variants.to_dict("records"):
        ident = (variant["creative_id"], variant["product"])
        if ident in seen or variant["blocked"]:
            continue
        if len(rows) == limit:
            break
        seen.add(ident)
        renders = json.loads(variant["renders"])
        pictures: dict[str, adgen.renderers.Rendered] = {}
        tiles = []
        for name in names:
            placement = resolve_placement(name)
            key = renders.get(aspect_class(placement), variant["job_key"])
            if key not in pictures:
                pictures[key] = renderer([plan.jobs[key]])[0]
            picture = pictures[key]
            captions = [Caption(role, text)
                        for role, text in json.loads(variant["captions"]).items()]
            try:
                ad = compose(picture.image, placement, subject_box=picture.subject_box,
                             logo=style.logo, captions=captions, colors=style.colors,
                             font=style.font)
            except PostProcessError:  # shown as such: the run reports it the same way
                tiles.append(Tile(_refused(placement.size), f"{name} · caption too long"))
                continue
            tiles.append(Tile(ad.image, f"{name} · {ad.checks['arrangement']}"))
        title = f"{campaign.name} · {variant['creative_id']}"
        rows.append((title + (f" · {variant['product']}" if variant["product"] else ""), tiles))
    return rows


def run_rows(out: Path, limit: int, placements: list[str]) -> list[tuple[str, list[Tile]]]:
    """One row of tiles per variant of the finished run in ``out``, at most ``limit`` rows: the
    creatives in turn, each row's segment sharing no key value with an earlier row's where the
    run has one; its assets in ``placements`` (all the variant's when empty), read from the
    files the run wrote."""
    import pandas as pd

    manifest = pd.read_parquet(out / "manifest.parquet")
    manifest = manifest[manifest["status"] == "ok"]
    creatives = list(dict.fromkeys(manifest["creative_id"]))
    variants = [assets for _, assets in manifest.groupby("variant_id", sort=False)]
    rows: list[tuple[str, list[Tile]]] = []
    seen: set[tuple[str, str]] = set()  # segment key values shown so far
    while len(rows) < limit and variants:
        creative = creatives[len(rows) % len(creatives)]
        mine = [v for v in variants if v.iloc[0]["creative_id"] == creative] or variants
        keys = [set(json.loads(v.iloc[0]["segment"]).items()) for v in mine]
        fresh = [v for v, k in zip(mine, keys, strict=True) if not k & seen]
        assets = (fresh or mine)[0]
        variants = [v for v in variants if v.iloc[0]["segment_id"] != assets.iloc[0]["segment_id"]]
        first = assets.iloc[0]
        seen |= set(json.loads(first["segment"]).items())
        variant_id = first["variant_id"]
        by_name = {resolve_placement(row["placement"]).name: row for _, row in assets.iterrows()}
        names = [resolve_placement(name).name for name in placements] or list(by_name)
        tiles = [Tile(_read(out / by_name[name]["path"]), name) for name in names
                 if name in by_name]
        segment = ", ".join(f"{k}={v}" for k, v in json.loads(first["segment"]).items())
        rows.append((f"{first['creative_id']} · {segment} · {variant_id}", tiles))
    return rows


def _read(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _refused(size: tuple[int, int]) -> Image.Image:
    """A crossed-out tile for a placement the captions do not fit."""
    tile = Image.new("RGB", size, (250, 250, 250))
    draw = ImageDraw.Draw(tile)
    draw.line((0, 0, *size), fill=(200, 60, 60), width=2)
    draw.line((0, size[1], size[0], 0), fill=(200, 60, 60), width=2)
    return tile


def sheet(rows: list[tuple[str, list[Tile]]], width: int, height: int = 360) -> Image.Image:
    """The tiles at a common ``height`` (wide banners by width), wrapped into lines per row."""
    pad = 16
    font, head = load_font(REGULAR, 0, 15), load_font(REGULAR, 0, 22)
    placed: list[tuple[Image.Image, tuple[int, int], str]] = []
    draw_label = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    titles: list[tuple[str, int]] = []
    y = pad
    for title, tiles in rows:
        titles.append((title, y))
        y += 34
        x, line = pad, 0
        for tile in tiles:
            k = min(height / tile.image.height, (width - 2 * pad) / 2 / tile.image.width, 1.0)
            size = (max(1, round(tile.image.width * k)), max(1, round(tile.image.height * k)))
            if x + size[0] > width - pad:
                x, y, line = pad, y + line + 30, 0
            placed.append((tile.image.resize(size, Image.Resampling.LANCZOS), (x, y),
                           tile.label))
            x += max(size[0], round(draw_label.textlength(tile.label, font=font))) + pad
            line = max(line, size[1])
        y += line + 30 + pad
    out = Image.new("RGB", (width, y), (236, 237, 240))
    draw = ImageDraw.Draw(out)
    for title, top in titles:
        draw.text((pad, top), title, fill=(30, 30, 30), font=head)
    for image, (x, top), label in placed:
        out.paste(image, (x, top))
        draw.rectangle((x - 1, top - 1, x + image.width, top + image.height), outline=(190,) * 3)
        draw.text((x, top + image.height + 5), label, fill=(70, 70, 70), font=font)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaigns", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=Path("contact_sheet.png"))
    parser.add_argument("--width", type=int, default=2400)
    parser.add_argument("--rows", type=int, default=2, help="rows per campaign (or run)")
    parser.add_argument("--run", type=Path, default=None,
                        help="a finished run's output folder: show its own assets")
    parser.add_argument("--placements", nargs="*", default=[
        "feed_square", "story", "landscape", "300x250"], help="with --run: which to show")
    parser.add_argument("--height", type=int, default=360, help="height of a tile")
    parser.add_argument("--small", type=Path, default=None,
                        help="also write a 1000 px wide copy here (docs/contact_sheet.png)")
    args = parser.parse_args(argv)
    if args.run is not None:
        rows = run_rows(args.run, args.rows, args.placements)
    else:
        paths = args.campaigns or sorted((REPO / "campaigns").glob("*.yaml"))
        rows = [row for path in paths for row in ads_for(path, args.rows)]
    image = sheet(rows, args.width, args.height)
    image.save(args.out, optimize=True, quality=80)  # quality: WebP/JPEG
    print(f"wrote {args.out} ({image.width}x{image.height}, {len(rows)} rows)")
    if args.small is not None:
        small = image.resize((1000, round(image.height * 1000 / image.width)),
                             Image.Resampling.LANCZOS)
        args.small.parent.mkdir(parents=True, exist_ok=True)
        small.convert("P", palette=Image.Palette.ADAPTIVE, colors=192).save(args.small,
                                                                           optimize=True)
        print(f"wrote {args.small} ({small.width}x{small.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
