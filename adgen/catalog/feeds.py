"""Product catalogs: read a product feed into :class:`Product` records.

Formats (``catalog.format``, ``auto`` picks by file name and content):

- ``merchant-tsv``: Google Merchant Center tab-separated feed (header row of GMC field names);
- ``merchant-xml``: Google Merchant Center RSS 2.0 / Atom feed, fields in the ``g:`` namespace;
- ``meta-csv``: Meta (Facebook) catalog CSV;
- ``csv`` / ``parquet``: any table, with ``catalog.columns`` mapping adgen's field names to the
  table's columns.

A feed that cannot be read at all (missing file, no id column, broken XML) raises
:class:`CatalogError`. A single bad product (no id, a price that is not ``"15.00 USD"``) never
costs the others: it is left out, with the reason, in :attr:`Catalog.excluded`, like products
that are out of stock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from adgen.errors import CatalogError

GOOGLE_NS = "http://base.google.com/ns/1.0"

FIELDS = (
    "id", "title", "description", "brand", "link", "price", "sale_price", "availability",
    "image_link", "additional_image_link", "product_type", "google_product_category", "gtin",
    "mpn", "condition", "custom_label_0", "custom_label_1", "custom_label_2", "custom_label_3",
    "custom_label_4",
)
"""Feed fields adgen reads (Google Merchant Center names; Meta's catalog uses the same)."""

AVAILABILITY = {
    "in_stock": "in_stock", "in stock": "in_stock", "available for order": "in_stock",
    "out_of_stock": "out_of_stock", "out of stock": "out_of_stock",
    "discontinued": "out_of_stock", "preorder": "preorder", "pre-order": "preorder",
    "backorder": "backorder", "available_for_order": "in_stock",
}
"""Availability values of both platforms, normalised to GMC's four."""

_PRICE = re.compile(
    r"^\s*(?:(?P<cur1>[A-Za-z]{3})\s*)?(?P<amount>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?:\s*(?P<cur2>[A-Za-z]{3}))?\s*$"
)

MAX_DIGITS = (15, 6)
"""Digits a price may have before and after the point: more is a feed error, and would be more
than Babel's decimal arithmetic formats."""


@dataclass(frozen=True)
class Money:
    """An amount in a currency (ISO 4217 code). Prints as the feed writes it: ``15.00 USD``."""

    amount: Decimal
    currency: str

    def __str__(self) -> str:
        return f"{self.amount:.2f} {self.currency}"

    def __float__(self) -> float:
        return float(self.amount)


def parse_price(text: str) -> Money:
    """``"15.00 USD"`` (GMC, Meta), ``"USD 15"`` or ``"1,299.00 EUR"`` → :class:`Money`;
    :class:`ValueError` says what is wrong."""
    match = _PRICE.match(str(text))
    currency = match and (match["cur1"] or match["cur2"])
    if not match or not currency or (match["cur1"] and match["cur2"]):
        raise ValueError(f"price {str(text)[:40]!r} is not an amount and a currency code "
                         "such as '15.00 USD'")
    amount = match["amount"].replace(",", "")
    whole, _, cents = amount.partition(".")
    if len(whole.lstrip("0")) > MAX_DIGITS[0] or len(cents) > MAX_DIGITS[1]:
        raise ValueError(f"price {str(text)[:40]!r} has more digits than a price can (at most "
                         f"{MAX_DIGITS[0]} before the point and {MAX_DIGITS[1]} after)")
    return Money(Decimal(amount), currency.upper())


@dataclass(frozen=True)
class Product:
    """One product of a feed. Templates see it as ``product`` (``product.title``,
    ``product.price``, ``product.sale_price``, ``product.custom_labels[0]``, …)."""

    id: str
    title: str
    description: str = ""
    brand: str = ""
    link: str = ""
    price: Money | None = None
    sale_price: Money | None = None
    availability: str = "in_stock"
    image_link: str = ""
    additional_image_links: tuple[str, ...] = ()
    product_type: str = ""
    custom_labels: tuple[str, ...] = ("", "", "", "", "")
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def on_sale(self) -> bool:
        return self.sale_price is not None and self.price is not None \
            and self.sale_price.amount < self.price.amount

    @property
    def current_price(self) -> Money | None:
        """The price a customer pays now: the sale price when there is one."""
        return self.sale_price if self.sale_price is not None else self.price

    def context(self) -> ProductContext:
        """The template view of this product."""
        return ProductContext(self)


class ProductContext(dict[str, Any]):
    """What a template sees as ``product``: a mapping of the product's fields that prints as
    its title, so ``{{ product }}`` and ``{{ product.title }}`` both read naturally."""

    def __init__(self, product: Product) -> None:
        super().__init__(
            id=product.id, title=product.title, description=product.description,
            brand=product.brand, link=product.link, price=product.price,
            sale_price=product.sale_price, current_price=product.current_price,
            on_sale=product.on_sale, availability=product.availability,
            image_link=product.image_link,
            additional_image_links=list(product.additional_image_links),
            product_type=product.product_type, custom_labels=list(product.custom_labels),
            **{f"custom_label_{i}": v for i, v in enumerate(product.custom_labels)},
        )

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __str__(self) -> str:
        return str(self["title"])


@dataclass
class Catalog:
    """The usable products of a feed by id, and the left-out ones with their reasons."""

    where: str
    products: dict[str, Product]
    excluded: dict[str, str] = field(default_factory=dict)

    def __contains__(self, product_id: object) -> bool:
        return product_id in self.products

    def get(self, product_id: str) -> Product | None:
        return self.products.get(product_id)

    def exclude(self, product_id: str, reason: str) -> None:
        """Leave a product out (its image turned out unusable, say)."""
        self.products.pop(product_id, None)
        self.excluded[product_id] = reason


def read_catalog(path: Path, *, format: str = "auto", columns: Mapping[str, str] | None = None,
                 keep: Iterable[str] = ("in_stock", "preorder", "backorder")) -> Catalog:
    """Read a product feed. Products whose availability is not in ``keep`` are left out."""
    if not path.is_file():
        raise CatalogError(f"{path}: catalog file not found; fix catalog.path in the campaign")
    kind = _detect(path) if format == "auto" else format
    if kind == "merchant-xml":
        records = list(_read_xml(path))
    else:
        records = _read_table(path, kind, dict(columns or {}))
    return _build(str(path), records, frozenset(keep))


def _detect(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in {".xml", ".rss", ".atom"}:
        return "merchant-xml"
    if suffix in {".parquet", ".pq"}:
        return "parquet"
    if suffix in {".tsv", ".txt"}:
        return "merchant-tsv"
    if suffix == ".csv":
        return "meta-csv"
    with path.open("rb") as handle:
        head = handle.read(512).lstrip()
    if head.startswith(b"<"):
        return "merchant-xml"
    raise CatalogError(f"{path}: cannot tell the feed format from the name {path.name!r}; set "
                       "catalog.format (merchant-tsv, merchant-xml, meta-csv, csv or parquet)")


def _read_table(path: Path, kind: str, columns: dict[str, str]) -> list[dict[str, str]]:
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if kind == "merchant-tsv" else ",", dtype=str,
                                keep_default_na=False, encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError,
            OSError, ValueError) as exc:
        raise CatalogError(f"{path}: not a readable {kind} feed ({str(exc)[:200]})") from None
    if kind in {"csv", "parquet"} and columns:
        unknown = sorted(set(columns) - set(FIELDS) - {"additional_image_links"})
        if unknown:
            raise CatalogError(f"{path}: catalog.columns maps unknown field(s) {unknown}; "
                               f"known fields: {', '.join(FIELDS)}")
        missing = sorted(c for c in columns.values() if c not in frame.columns)
        if missing:
            raise CatalogError(f"{path}: catalog.columns names column(s) {missing} that the "
                               f"feed lacks; it has {_listing(frame.columns)}")
        frame = frame.rename(columns={v: k for k, v in columns.items()})
    frame.columns = [_field_name(str(c)) for c in frame.columns]
    if "id" not in frame.columns:
        raise CatalogError(f"{path}: the feed has no 'id' column (it has "
                           f"{_listing(frame.columns)}); map one with catalog.columns: {{id: ...}}")
    frame = frame.astype("string").fillna("")
    return [{str(k): str(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _field_name(column: str) -> str:
    """Feed headers as field names: ``g:price`` and ``Price`` → ``price``."""
    name = column.strip().lower().removeprefix("g:").replace(" ", "_")
    return {"additional_image_links": "additional_image_link"}.get(name, name)


def _listing(columns: Iterable[object], most: int = 20) -> str:
    names = [str(c) for c in columns]
    more = len(names) - most
    return ", ".join(names[:most]) + (f" and {more} more" if more > 0 else "")


def _read_xml(path: Path) -> Iterator[dict[str, str]]:
    from defusedxml import ElementTree  # no entities, no external references

    try:
        root = ElementTree.parse(path).getroot()
    except Exception as exc:  # ParseError, DTDForbidden, EntitiesForbidden, ...
        raise CatalogError(f"{path}: not a readable XML feed ({exc})") from None
    items = [el for el in root.iter() if _local(el.tag) in {"item", "entry"}]
    if not items:
        raise CatalogError(f"{path}: the XML feed has no <item> (RSS) or <entry> (Atom) elements")
    for item in items:
        record: dict[str, str] = {}
        for child in item:
            name = _field_name(_local(child.tag))
            text = (child.text or "").strip()
            if name == "additional_image_link" and record.get(name):
                record[name] += "," + text
            elif name not in record or child.tag.startswith(f"{{{GOOGLE_NS}}}"):
                record[name] = text  # g:title wins over a plain RSS title
        yield record


def _local(tag: object) -> str:
    return str(tag).rsplit("}", 1)[-1]


def _build(where: str, records: list[dict[str, str]], keep: frozenset[str]) -> Catalog:
    catalog = Catalog(where, {})
    for number, record in enumerate(records, start=1):
        product_id = record.get("id", "").strip()
        if not product_id:
            catalog.excluded[f"(item {number})"] = "no id"
            continue
        if product_id in catalog.products or product_id in catalog.excluded:
            catalog.excluded[f"{product_id} (item {number})"] = f"duplicate id {product_id!r}"
            continue
        try:
            product = _product(record)
        except ValueError as exc:
            catalog.excluded[product_id] = str(exc)
            continue
        if product.availability not in keep:
            catalog.excluded[product_id] = f"availability is {product.availability}"
            continue
        if not product.image_link:
            catalog.excluded[product_id] = "no image_link"
            continue
        catalog.products[product_id] = product
    return catalog


def _product(record: dict[str, str]) -> Product:
    def text(name: str) -> str:
        return str(record.get(name, "") or "").strip()

    availability_raw = text("availability").lower() or "in_stock"
    availability = AVAILABILITY.get(availability_raw)
    if availability is None:
        raise ValueError(f"availability {availability_raw!r} is not one of in_stock, "
                         "out_of_stock, preorder, backorder")
    if not text("title"):
        raise ValueError("no title")
    price = parse_price(text("price")) if text("price") else None
    sale = parse_price(text("sale_price")) if text("sale_price") else None
    if price and sale and price.currency != sale.currency:
        raise ValueError(f"sale_price is in {sale.currency} but price in {price.currency}")
    extra_images = tuple(u.strip() for u in text("additional_image_link").split(",") if u.strip())
    known = set(FIELDS)
    return Product(
        id=text("id"), title=text("title"), description=text("description"),
        brand=text("brand"), link=text("link"), price=price, sale_price=sale,
        availability=availability, image_link=text("image_link"),
        additional_image_links=extra_images, product_type=text("product_type"),
        custom_labels=tuple(text(f"custom_label_{i}") for i in range(5)),
        extra={k: v for k, v in record.items() if k not in known and v},
    )
