"""Product feeds (Merchant Center TSV and XML, Meta CSV, mapped CSV/Parquet), image downloads
from a real HTTP server on 127.0.0.1, and the white-background matte."""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from adgen.catalog.feeds import Money, parse_price, read_catalog
from adgen.catalog.images import FetchLimits, ProductImages
from adgen.errors import CatalogError
from adgen.post.matte import connected_to_border, white_matte
from tests.catalog_server import Handler, png_bytes, serve

TSV = (
    "id\ttitle\tdescription\tbrand\tprice\tsale_price\tavailability\timage_link\t"
    "additional_image_link\tproduct_type\tcustom_label_0\n"
    "mug-1\tStoneware mug\tHolds 350 ml\tNorthwind\t15.00 USD\t12.50 USD\tin_stock\tmug.png\t"
    "a.jpg,b.jpg\tHome > Kitchen\tsummer\n"
    "mug-2\tTravel mug\t\tNorthwind\t24.00 USD\t\tout_of_stock\tmug.png\t\tHome\t\n"
    "mug-3\tBroken price\t\tNorthwind\tfifteen\t\tin_stock\tmug.png\t\tHome\t\n"
    "mug-4\tPreorder mug\t\tNorthwind\tUSD 9\t\tpreorder\tmug.png\t\tHome\t\n"
)

XML = """<?xml version="1.0"?>
<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0">
 <channel><title>Northwind</title>
  <item>
   <g:id>tee-1</g:id><title>Plain title</title><g:title>Organic tee</g:title>
   <g:price>19.99 EUR</g:price><g:availability>in stock</g:availability>
   <g:image_link>https://example.invalid/tee.jpg</g:image_link>
   <g:additional_image_link>https://example.invalid/tee-2.jpg</g:additional_image_link>
   <g:additional_image_link>https://example.invalid/tee-3.jpg</g:additional_image_link>
   <g:custom_label_1>bestseller</g:custom_label_1>
  </item>
  <item><g:id>tee-2</g:id><g:title>Gone tee</g:title><g:price>5 EUR</g:price>
   <g:availability>out_of_stock</g:availability><g:image_link>x.png</g:image_link></item>
 </channel>
</rss>
"""

META_CSV = (
    "id,title,description,availability,condition,price,link,image_link,brand,sale_price\n"
    "sku-1,Trail shoe,Grips,in stock,new,89.00 GBP,https://x.invalid/1,shoe.png,Acme,\n"
    "sku-2,Old shoe,,discontinued,new,10.00 GBP,https://x.invalid/2,shoe.png,Acme,\n"
    "sku-3,Odd shoe,,maybe,new,10.00 GBP,https://x.invalid/3,shoe.png,Acme,\n"
)


def test_prices_parse_as_the_platforms_write_them() -> None:
    assert parse_price("15.00 USD") == Money(Decimal("15.00"), "USD")
    assert parse_price("USD 9") == Money(Decimal("9"), "USD")
    assert parse_price("1,299.50 eur") == Money(Decimal("1299.50"), "EUR")
    assert str(parse_price("7 JPY")) == "7.00 JPY"
    for bad in ("fifteen", "15.00", "USD 15 EUR", "15,0 USD"):
        with pytest.raises(ValueError, match="is not an amount and a currency code"):
            parse_price(bad)


def test_merchant_center_tsv(tmp_path: Path) -> None:
    (tmp_path / "feed.tsv").write_text(TSV, encoding="utf-8")
    catalog = read_catalog(tmp_path / "feed.tsv")
    assert list(catalog.products) == ["mug-1", "mug-4"]
    mug = catalog.products["mug-1"]
    assert (mug.title, mug.brand, mug.product_type) == ("Stoneware mug", "Northwind",
                                                        "Home > Kitchen")
    assert mug.price == Money(Decimal("15.00"), "USD")
    assert mug.sale_price == Money(Decimal("12.50"), "USD") and mug.on_sale
    assert mug.current_price == mug.sale_price
    assert mug.additional_image_links == ("a.jpg", "b.jpg")
    assert mug.custom_labels[0] == "summer"
    assert catalog.products["mug-4"].availability == "preorder"
    assert catalog.excluded == {
        "mug-2": "availability is out_of_stock",
        "mug-3": "price 'fifteen' is not an amount and a currency code such as '15.00 USD'",
    }


def test_merchant_center_xml_uses_the_g_namespace(tmp_path: Path) -> None:
    (tmp_path / "feed.xml").write_text(XML, encoding="utf-8")
    catalog = read_catalog(tmp_path / "feed.xml")
    tee = catalog.products["tee-1"]
    assert tee.title == "Organic tee"  # g:title wins over the RSS title
    assert tee.price == Money(Decimal("19.99"), "EUR")
    assert tee.additional_image_links == ("https://example.invalid/tee-2.jpg",
                                          "https://example.invalid/tee-3.jpg")
    assert tee.custom_labels[1] == "bestseller"
    assert catalog.excluded == {"tee-2": "availability is out_of_stock"}


def test_xml_entity_expansion_is_refused(tmp_path: Path) -> None:
    bomb = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
            '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><rss><item><g:id>&b;</g:id></item></rss>')
    (tmp_path / "bomb.xml").write_text(bomb, encoding="utf-8")
    with pytest.raises(CatalogError, match=r"bomb\.xml: not a readable XML feed"):
        read_catalog(tmp_path / "bomb.xml")


def test_meta_catalog_csv(tmp_path: Path) -> None:
    (tmp_path / "meta.csv").write_text(META_CSV, encoding="utf-8")
    catalog = read_catalog(tmp_path / "meta.csv")
    assert list(catalog.products) == ["sku-1"]
    assert catalog.products["sku-1"].price == Money(Decimal("89.00"), "GBP")
    assert catalog.products["sku-1"].link == "https://x.invalid/1"
    assert catalog.excluded["sku-2"] == "availability is out_of_stock"
    assert catalog.excluded["sku-3"].startswith("availability 'maybe' is not one of")


def test_plain_table_with_a_column_mapping(tmp_path: Path) -> None:
    frame = pd.DataFrame({"sku": ["a", "b"], "name": ["Lamp", "Desk"],
                          "cost": ["30 USD", "120 USD"], "photo": ["l.png", "d.png"]})
    mapping = {"id": "sku", "title": "name", "price": "cost", "image_link": "photo"}
    frame.to_csv(tmp_path / "plain.csv", index=False)
    frame.to_parquet(tmp_path / "plain.parquet")
    for name, kind in (("plain.csv", "csv"), ("plain.parquet", "parquet")):
        catalog = read_catalog(tmp_path / name, format=kind, columns=mapping)
        assert catalog.products["b"].title == "Desk"
        assert catalog.products["b"].price == Money(Decimal("120"), "USD")
    with pytest.raises(CatalogError, match=r"catalog.columns names column\(s\) \['sku_id'\]"):
        read_catalog(tmp_path / "plain.csv", format="csv", columns={"id": "sku_id"})
    with pytest.raises(CatalogError, match=r"maps unknown field\(s\) \['colour'\]"):
        read_catalog(tmp_path / "plain.csv", format="csv", columns={"colour": "name"})
    with pytest.raises(CatalogError, match=r"the feed has no 'id' column \(it has sku, name"):
        read_catalog(tmp_path / "plain.csv", format="csv")


def test_a_missing_feed_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"feed\.tsv: catalog file not found"):
        read_catalog(tmp_path / "feed.tsv")


# -- downloads ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve() as url:
        yield url


def images(tmp_path: Path, **limits: float) -> ProductImages:
    """A fetcher that may use the test server on 127.0.0.1."""
    return ProductImages(tmp_path / "cache", tmp_path, limits=FetchLimits(
        **limits, allow_hosts=("127.0.0.1",)))  # type: ignore[arg-type]


def test_download_once_then_from_the_cache(tmp_path: Path, server: str) -> None:
    before = Handler.hits.get("/ok.png", 0)  # the server is shared with other tests
    first = images(tmp_path).fetch(f"{server}/ok.png")
    assert Image.open(io.BytesIO(first)).size == (64, 48)
    assert images(tmp_path).fetch(f"{server}/ok.png") == first
    assert Handler.hits["/ok.png"] == before + 1
    cached = list((tmp_path / "cache" / "downloads").rglob("*.json"))
    assert len(cached) == 1 and '"content_type": "image/png"' in cached[0].read_text()


@pytest.mark.parametrize(("path", "limits", "message"), [
    ("/missing.png", {}, "HTTP 404"),
    ("/html", {}, "is text/html, not one of image/jpeg, image/png, image/webp"),
    ("/big.png", {"max_bytes": 1_000_000}, "is 50000000 bytes, more than the limit of 1000000"),
    ("/stream-big.png", {"max_bytes": 1_000_000}, "is more than 1000000 bytes"),
    ("/liar.png", {}, "does not decode"),
    ("/jpeg-as-png.png", {}, "is sent as image/png but is a JPEG file"),
    ("/slow.png", {"timeout": 0.5}, "took more than 0.5 s"),
    ("/short.png", {}, f"could not be fetched (the server sent {len(png_bytes())} of "
                       f"{len(png_bytes()) + 500} bytes)"),
])
def test_bad_downloads_say_why(tmp_path: Path, server: str, path: str,
                               limits: dict[str, float], message: str) -> None:
    with pytest.raises(CatalogError) as info:
        images(tmp_path, **limits).fetch(f"{server}{path}")
    assert message in str(info.value)
    assert str(info.value).startswith(f"image '{server}{path}'")
    assert not list((tmp_path / "cache").rglob("*.json"))  # nothing bad is cached


def test_local_links_stay_inside_the_catalog_folder(tmp_path: Path) -> None:
    (tmp_path / "feed").mkdir()
    (tmp_path / "feed" / "ok.png").write_bytes(png_bytes())
    (tmp_path / "secret.png").write_bytes(png_bytes())
    fetcher = ProductImages(tmp_path / "cache", tmp_path / "feed")
    assert fetcher.fetch("ok.png") == fetcher.fetch(f"file://{tmp_path}/feed/ok.png")
    for link in ("../secret.png", str(tmp_path / "secret.png"), f"file://{tmp_path}/secret.png"):
        with pytest.raises(CatalogError, match="is outside the catalog's folder"):
            fetcher.fetch(link)
    with pytest.raises(CatalogError, match="only http"):
        fetcher.fetch("ftp://example.invalid/a.png")


# -- the matte ----------------------------------------------------------------------------------


def product_on_white(size: int = 200) -> Image.Image:
    """A red mug on a white studio background, with a white label inside the mug and a soft
    (anti-aliased) edge, as catalog photos come."""
    big = Image.new("RGB", (size * 4, size * 4), (252, 252, 252))
    draw = ImageDraw.Draw(big)
    draw.rounded_rectangle((160, 120, 640, 720), radius=80, fill=(190, 30, 40))
    draw.ellipse((620, 300, 760, 520), outline=(190, 30, 40), width=36)  # the handle
    draw.rectangle((300, 350, 500, 450), fill=(255, 255, 255))  # a white label
    return big.resize((size, size), Image.Resampling.LANCZOS)


def test_white_matte_cuts_the_background_and_keeps_the_product() -> None:
    photo = product_on_white()
    cut, note = white_matte(photo)
    assert note.startswith("white matte, ") and note.endswith("% background")
    rgba = np.asarray(cut)
    src = np.asarray(photo)
    alpha = rgba[..., 3]
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0 and alpha[100, 5] == 0
    # the white label inside the mug is not background: it is not connected to the border
    assert alpha[100, 100] == 255 and tuple(rgba[100, 100, :3]) == (255, 255, 255)
    opaque = alpha == 255
    assert np.array_equal(rgba[opaque][:, :3], src[opaque])  # product pixels unchanged
    soft = (alpha > 0) & (alpha < 255)
    assert soft.sum() > 0
    # edges carry no white halo: the soft pixels' colour is the mug's red, not pink
    reds = rgba[soft][:, :3].astype(int)
    assert np.median(reds[:, 1]) < 120
    assert alpha[40:170, 50:150].min() == 255  # the mug's body is fully opaque


def test_matte_keeps_alpha_and_refuses_busy_backgrounds() -> None:
    with_alpha = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    ImageDraw.Draw(with_alpha).rectangle((10, 10, 30, 30), fill=(0, 200, 0, 255))
    assert white_matte(with_alpha) == (with_alpha, "kept alpha") or \
        white_matte(with_alpha)[1] == "kept alpha"
    rng = np.random.default_rng(1)
    noisy = Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    cut, note = white_matte(noisy)
    assert note == "no plain background"
    assert np.asarray(cut)[..., 3].min() == 255


def test_connected_to_border_is_exact_on_a_spiral() -> None:
    mask = np.ones((9, 9), dtype=bool)
    mask[2, 2:7] = mask[2:7, 6] = mask[6, 2:7] = mask[4:7, 2] = False  # a ring with a gap
    mask[4, 3:5] = False
    reached = connected_to_border(mask)
    assert reached[0, 0] and reached[3, 3]  # the gap at (3, 2) lets the outside in
    assert not reached[5, 4] or reached[5, 4] == mask[5, 4]
    closed = mask.copy()
    closed[3, 2] = False
    assert not connected_to_border(closed)[5, 4]


def test_cutouts_are_cached_by_source_bytes(tmp_path: Path) -> None:
    product_on_white().save(tmp_path / "mug.png")
    (tmp_path / "feed.tsv").write_text(TSV, encoding="utf-8")
    product = read_catalog(tmp_path / "feed.tsv").products["mug-1"]
    fetcher = ProductImages(tmp_path / "cache", tmp_path)
    cut = fetcher.cutout(product)
    assert cut.path.parent == tmp_path / "cache" / "cutouts"
    assert Image.open(cut.path).mode == "RGBA"
    assert '"note": "white matte' in cut.path.with_suffix(".json").read_text()
    again = ProductImages(tmp_path / "cache", tmp_path).cutout(product)
    assert (again.path, again.sha256) == (cut.path, cut.sha256)
    product_on_white(180).save(tmp_path / "mug.png")  # a new photo: a new cut-out
    assert ProductImages(tmp_path / "cache", tmp_path).cutout(product).path != cut.path


def test_a_segmentation_model_cuts_out_when_configured(tmp_path: Path) -> None:
    import torch
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
    )

    from adgen.post.matte import model_matte

    torch.manual_seed(0)
    config = SegformerConfig(
        num_channels=3, num_encoder_blocks=1, depths=[1], sr_ratios=[1], hidden_sizes=[8],
        num_attention_heads=[1], patch_sizes=[7], strides=[4], mlp_ratios=[1],
        decoder_hidden_size=8, num_labels=2, id2label={0: "background", 1: "product"},
        label2id={"background": 0, "product": 1})
    folder = tmp_path / "tiny-segformer"
    SegformerForSemanticSegmentation(config).save_pretrained(folder)
    SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    photo = product_on_white(96)
    cut, note = model_matte(photo, str(folder))
    assert note.startswith(f"segmentation model {folder}, ")
    rgba = np.asarray(cut)
    assert rgba.shape == (96, 96, 4)
    assert np.array_equal(rgba[..., :3], np.asarray(photo))  # only alpha is set
    assert set(np.unique(rgba[..., 3])) <= {0, 255}
    photo.save(tmp_path / "mug.png")
    (tmp_path / "feed.tsv").write_text(TSV, encoding="utf-8")
    product = read_catalog(tmp_path / "feed.tsv").products["mug-1"]
    made = ProductImages(tmp_path / "cache", tmp_path, matte="model",
                         matte_model=str(folder)).cutout(product)
    assert made.note == note
    white = ProductImages(tmp_path / "cache", tmp_path).cutout(product)
    assert white.path != made.path  # the matte enters the cut-out's cache key
    with pytest.raises(CatalogError, match="cannot be loaded as an image-segmentation model"):
        model_matte(photo, str(tmp_path / "no-such-model"))


# -- one bad product costs only itself ----------------------------------------------------------


def test_a_price_with_too_many_digits_leaves_its_product_out(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"has more digits than a price can \(at most 15 before"):
        parse_price("1" * 35 + " USD")
    with pytest.raises(ValueError, match="and 6 after"):
        parse_price("1.1234567 USD")
    assert parse_price("999999999999999.999999 USD").amount == Decimal("999999999999999.999999")
    (tmp_path / "feed.tsv").write_text(TSV.replace("USD 9", "1" * 35 + " USD"), encoding="utf-8")
    catalog = read_catalog(tmp_path / "feed.tsv")
    assert list(catalog.products) == ["mug-1"]
    assert catalog.excluded["mug-4"].startswith(f"price '{'1' * 35} USD' has more digits")


@pytest.mark.parametrize(("path", "note"), [("/white.png", "white matte, 100% background"),
                                            ("/clear.png", "kept alpha")])
def test_a_photo_with_nothing_left_after_the_cut_out_is_refused(
        tmp_path: Path, server: str, path: str, note: str) -> None:
    (tmp_path / "feed.tsv").write_text(
        f"id\ttitle\tprice\timage_link\np\tLamp\t5 USD\t{server}{path}\n", encoding="utf-8")
    product = read_catalog(tmp_path / "feed.tsv").products["p"]
    with pytest.raises(CatalogError) as info:
        images(tmp_path).cutout(product)
    assert str(info.value) == (f"image '{server}{path}' has nothing left to show after the "
                               f"cut-out ({note}): the photo is all background or fully "
                               "transparent")
    assert not list((tmp_path / "cache").rglob("cutouts/*"))


@pytest.mark.parametrize("kind", ["PNG", "JPEG"])
def test_large_photos_are_reduced_before_the_cut_out(tmp_path: Path, kind: str) -> None:
    from adgen.catalog.images import MAX_SIDE

    photo = Image.new("RGB", (4800, 3600), (252, 252, 252))
    ImageDraw.Draw(photo).rectangle((1200, 900, 3600, 2700), fill=(190, 30, 40))
    photo.save(tmp_path / f"big.{kind.lower()}", kind)
    (tmp_path / "feed.tsv").write_text(
        f"id\ttitle\tprice\timage_link\np\tLamp\t5 USD\tbig.{kind.lower()}\n", encoding="utf-8")
    cut = Image.open(images(tmp_path).cutout(read_catalog(tmp_path / "feed.tsv").products["p"])
                     .path)
    assert cut.size == (MAX_SIDE, MAX_SIDE * 3 // 4)
    r, g, b, a = cut.getpixel((MAX_SIDE // 2, MAX_SIDE * 3 // 8))  # type: ignore[misc]
    assert a == 255 and abs(r - 190) < 8 and g < 45 and b < 50
    assert cut.getpixel((5, 5))[3] == 0  # type: ignore[index]


def feed_campaign(root: Path, server: str) -> dict[str, Any]:
    """A campaign whose customers viewed one product each, most of them broken in some way."""
    port = server.rsplit(":", 1)[1]
    links = {
        "ok": f"{server}/ok.png", "white": f"{server}/white.png", "clear": f"{server}/clear.png",
        "drip": f"{server}/drip-body", "bad-status": f"{server}/bad-status",
        "many-headers": f"{server}/many-headers", "metadata": "http://169.254.169.254/a.png",
        "ftp-hop": f"{server}/redirect?to=ftp://example.invalid/a.png",
        "loopback": f"http://localhost:{port}/ok.png", "bad-port": "http://127.0.0.1:99999/a.png",
        "bad-ipv6": "http://[::1/a.png", "price": f"{server}/ok.png",
    }
    rows = [f"{pid}\tLamp {pid}\t{'1' * 35 if pid == 'price' else '5'} USD\t{link}"
            for pid, link in links.items()]
    (root / "feed.tsv").write_text("id\ttitle\tprice\timage_link\n" + "\n".join(rows) + "\n",
                                   encoding="utf-8")
    (root / "audience.csv").write_text("customer_id,viewed\n" + "".join(
        f"c{i},{pid}\n" for i, pid in enumerate(links)), encoding="utf-8")
    return {
        "name": "feed", "output": "out", "variants": 1, "placements": ["feed_square"],
        "audience": {"path": "audience.csv", "segment_by": [], "product_column": "viewed"},
        "catalog": {"path": "feed.tsv",
                    "images": {"timeout": 1, "allow_hosts": ["127.0.0.1"]}},
        "creatives": [{"id": "viewed", "prompt": "a {{ product.title }}",
                       "captions": {"headline": "{{ product.title }}"}}],
        "renderer": {"name": "offline", "width": 256, "height": 256},
    }


def test_each_bad_product_is_left_out_and_validate_finds_what_run_refuses(
        tmp_path: Path, server: str) -> None:
    import json

    import adgen
    from tests.conftest import write_campaign

    campaign = adgen.load_campaign(write_campaign(tmp_path, feed_campaign(tmp_path, server)))
    left_out = adgen.validate(campaign).products_left_out
    assert sorted(left_out) == sorted(["white", "clear", "drip", "bad-status", "many-headers",
                                       "metadata", "ftp-hop", "loopback", "bad-port",
                                       "bad-ipv6", "price"])
    expected = {
        "white": "has nothing left to show after the cut-out", "clear": "fully transparent",
        "drip": "took more than 1 s", "bad-status": "BadStatusLine",
        "many-headers": "got more than 100 headers", "metadata": "is on a link-local address",
        "ftp-hop": "which is not an http(s) link", "loopback": "is on a loopback address",
        "bad-port": "Port out of range", "bad-ipv6": "Invalid IPv6 URL",
        "price": "has more digits than a price can",
    }
    for pid, words in expected.items():
        assert words in left_out[pid], (pid, left_out[pid])
    result = adgen.run(campaign)
    ok = result.manifest[result.manifest["status"] == "ok"]
    assert list(ok["variant_id"].str.split("-").str[0]) == ["viewed"] and len(ok) == 1
    assert Image.open(tmp_path / "out" / ok.iloc[0]["path"]).size == (1080, 1080)
    summary = json.loads((tmp_path / "out" / "run.json").read_text())
    assert summary["products_left_out"].keys() == left_out.keys()


def test_validate_lists_twenty_products_left_out_then_a_count(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import write_campaign

    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "ok.png")
    rows = "".join(f"gone-{i}\tLamp\t5 USD\tout_of_stock\tok.png\n" for i in range(45))
    (tmp_path / "feed.tsv").write_text("id\ttitle\tprice\tavailability\timage_link\n"
                                       "ok\tLamp\t5 USD\tin_stock\tok.png\n" + rows,
                                       encoding="utf-8")
    (tmp_path / "audience.csv").write_text("customer_id,viewed\nc1,ok\n", encoding="utf-8")
    campaign = {
        "name": "feed", "output": "out", "variants": 1, "placements": ["feed_square"],
        "audience": {"path": "audience.csv", "segment_by": [], "product_column": "viewed"},
        "catalog": {"path": "feed.tsv"},
        "creatives": [{"id": "viewed", "prompt": "a {{ product.title }}",
                       "captions": {"headline": "{{ product.title }}"}}],
        "renderer": {"name": "offline", "width": 256, "height": 256},
    }
    path = write_campaign(tmp_path, campaign)
    for command in ("validate", "plan"):
        done = subprocess.run([sys.executable, "-m", "adgen", command, str(path)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        lines = [line for line in done.stdout.splitlines() if line.startswith("left out")]
        assert lines[:20] == [f"left out product gone-{i}: availability is out_of_stock"
                              for i in range(20)]
        assert lines[20:] == ["left out 25 more products (run.json lists them all after a run)"]


def test_allow_hosts_takes_host_names_and_addresses() -> None:
    from adgen.spec import FetchSpec

    assert FetchSpec(allow_hosts=["Images.Intranet", "[::1]", "10.0.0.5"]).allow_hosts == [
        "images.intranet", "::1", "10.0.0.5"]
    for bad in ("http://images.intranet", "images.intranet:8080", "images.intranet/x", ""):
        with pytest.raises(ValueError, match="is not a host name or address: give it without "
                                             "scheme, port or path"):
            FetchSpec(allow_hosts=[bad])
