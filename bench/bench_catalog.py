"""Catalog planning throughput: every customer gets the product they viewed, in their language.

A generated audience (100,000 customers by default, four languages) names one of 500 catalog
products per customer; the plan joins each customer to the product, renders its prompt and
localised captions (``{{ product.title }}``, ``{{ product.current_price | currency }}``) and
dedupes the jobs. Baseline, in the same process: the same audience planned without a catalog
(one brand product for everyone, one language), i.e. the cost of planning itself.
Cut-outs are made before timing (they are cached per product and made once per catalog).
Prints figures and the ratio; asserts nothing about time.

    .venv/bin/python bench/bench_catalog.py [--customers 100000] [--products 500]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

import adgen


def make_catalog(folder: Path, products: int) -> list[str]:
    (folder / "img").mkdir()
    rows = ["id\ttitle\tprice\tavailability\timage_link"]
    for number in range(products):
        image = Image.new("RGB", (64, 64), (252, 252, 252))
        ImageDraw.Draw(image).ellipse((12, 8, 52, 56), fill=(number % 255, 90, 160))
        image.save(folder / "img" / f"p{number}.png")
        rows.append(f"p{number}\tProduct {number}\t{10 + number % 90}.99 EUR\tin_stock\t"
                    f"img/p{number}.png")
    (folder / "feed.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return [f"p{n}" for n in range(products)]


def campaign(folder: Path, audience: Path, *, catalog: bool) -> adgen.CampaignSpec:
    headline: Any = ({"en": "{{ product.title }} for {{ product.current_price | currency }}",
                      "de": "{{ product.title }} für {{ product.current_price | currency }}",
                      "ar": "{{ product.title }} مقابل {{ product.current_price | currency }}",
                      "ja": "{{ product.title }} {{ product.current_price | currency }}"}
                     if catalog else "{{ product }} for you")
    data: dict[str, Any] = {
        "name": "bench-catalog",
        "audience": {"path": str(audience), "segment_by": [], "product_column": "viewed"},
        "creatives": [{"id": "viewed", "prompt": "a photo of {{ product }}",
                       "captions": {"headline": headline, "cta": "Shop"}}],
        "variants": 1,
        "locale": {"column": "lang", "fallback": True} if catalog else {},
        "output": str(folder / "out"),
    }
    if catalog:
        data["catalog"] = {"path": str(folder / "feed.tsv")}
    else:
        image = folder / "img" / "p0.png"
        data["brand"] = {"products": {f"p{n}": str(image) for n in range(500)}}
    return adgen.campaign_from_dict(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--products", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ids = make_catalog(folder, args.products)
        rng = np.random.default_rng(0)
        audience = folder / "audience.csv"
        pd.DataFrame({
            "customer_id": np.char.add("C", np.arange(args.customers).astype(str)),
            "lang": rng.choice(["en", "de", "ar", "ja"], args.customers),
            "viewed": rng.choice(ids, args.customers),
        }).to_csv(audience, index=False)
        with_catalog = campaign(folder, audience, catalog=True)
        start = time.perf_counter()
        adgen.plan(with_catalog, pd.read_csv(audience, nrows=args.products * 4))  # cut-outs
        warm = time.perf_counter() - start
        start, cpu = time.perf_counter(), time.process_time()
        plan = adgen.plan(with_catalog)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        base_audience = folder / "base.csv"
        pd.read_csv(audience).assign(viewed="p0").to_csv(base_audience, index=False)
        start, base_cpu = time.perf_counter(), time.process_time()
        base = adgen.plan(campaign(folder, base_audience, catalog=False))
        base_seconds, base_cpu = time.perf_counter() - start, time.process_time() - base_cpu
    summary = plan.summary()
    print(f"customers / products   {summary['customers']:>10,} / {args.products:,}")
    print(f"variants / jobs        {summary['variants']:>10,} / {summary['jobs']:,}")
    print(f"cut-outs (first plan)  {warm:>10.2f} s   (fetch, matte, cache; once per catalog)")
    print(f"catalog plan           {seconds:>10.2f} s   ({cpu:.2f} s CPU; "
          f"{summary['customers'] / seconds:,.0f} customers/s: join, locale, captions)")
    print(f"baseline plan          {base_seconds:>10.2f} s   ({base_cpu:.2f} s CPU; "
          f"{base.summary()['customers'] / base_seconds:,.0f} customers/s: one product, "
          "one language)")
    print(f"ratio                  {seconds / base_seconds:>10.2f}x the baseline's time "
          f"({cpu / base_cpu:.2f}x its CPU time)")


if __name__ == "__main__":
    main()
