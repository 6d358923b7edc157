"""The campaign spec: pydantic models of a campaign, and ``load_campaign(path)``.

A campaign is validated once, at the boundary: unknown fields, bad values and missing files are
reported together, one line each, naming the file and the field. Relative paths resolve against
the YAML file's folder (against the working directory for specs built in Python).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adgen.errors import CampaignError
from adgen.experiments.hashing import check_weights
from adgen.output.mirror import output_folder
from adgen.output.store import is_url
from adgen.placements import Placement, resolve_placement
from adgen.sources.sql import (
    TABLE_NAME,
    check_table_name,
    check_url,
    resolve_url,
    select_table,
    shorten,
)

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")

LogoPosition = Literal[
    "top-left", "top-right", "bottom-left", "bottom-right", "top-center", "bottom-center"
]
ImageFormat = Literal["jpeg", "png", "webp"]


class _Model(BaseModel):
    # errors never repeat the input: a refused database URL holds a password
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class Aggregate(_Model):
    """A per-segment aggregate of an audience column, available to templates by its name."""

    column: str
    agg: Literal["mode", "mean", "median", "min", "max", "sum", "nunique"] = "mode"


class SqlSpec(_Model):
    """Rows from a SQL database: a ``query``, or a whole ``table``, at ``url`` (a SQLAlchemy
    URL: ``duckdb:///file.db`` embedded, ``postgresql://user@host/db`` with ``pip install
    'adgen[sql]'``; see :mod:`adgen.sources.sql`). Passwords come from the environment, never
    the file: ``${NAME}`` in the URL, or the driver's own variables (``PGPASSWORD``)."""

    url: str
    query: str | None = None
    table: str | None = None

    @field_validator("url")
    @classmethod
    def _secret_free(cls, value: str) -> str:
        return check_url(value)

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str | None) -> str | None:
        return None if value is None else check_table_name(value)

    @model_validator(mode="after")
    def _one_source(self) -> SqlSpec:
        if (self.query is None) == (self.table is None):
            raise ValueError("give exactly one of query (SQL) or table (a table name)")
        if self.query is not None and not self.query.strip():
            raise ValueError("the query is empty")
        return self

    @property
    def sql(self) -> str:
        """The query to run."""
        return self.query if self.query is not None else select_table(str(self.table))

    @property
    def where(self) -> str:
        """The source in messages: the URL as written and the query on one line."""
        return f"{self.url.partition('?')[0]} query {shorten(self.sql)!r}"


class AudienceSpec(_Model):
    """Where the customers come from and how they split into segments: a file (``path``) or
    a SQL query (``sql``).

    ``segment_by: []`` makes every customer a segment of its own (per-customer mode)."""

    path: Path | None = None
    sql: SqlSpec | None = None
    id_column: str = "customer_id"
    segment_by: list[str] = Field(default_factory=list)
    filter: str | None = None
    aggregates: dict[str, Aggregate] = Field(default_factory=dict)
    product_column: str | None = None
    product_rank_by: str | None = None
    drop_missing_keys: bool = False
    encoding: str = "utf-8"

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r}; use e.g. utf-8, utf-8-sig, "
                             "latin-1 or cp1252") from None
        return value

    @field_validator("filter")
    @classmethod
    def _restricted_filter(cls, value: str | None) -> str | None:
        if value is not None:
            from adgen.audience.filters import parse_filter

            try:
                parse_filter(value)
            except CampaignError as exc:
                raise ValueError(str(exc).removeprefix("audience.filter ")) from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> AudienceSpec:
        if self.path is not None and self.sql is not None:
            raise ValueError("give the audience as a file (path) or a query (sql), not both")
        return self

    @field_validator("aggregates", mode="before")
    @classmethod
    def _short_aggregates(cls, value: Any) -> Any:
        # allow the short form ``avg_spend: spend:mean``
        if isinstance(value, Mapping):
            return {
                name: dict(zip(("column", "agg"), spec.split(":", 1), strict=False))
                if isinstance(spec, str)
                else spec
                for name, spec in value.items()
            }
        return value


Availability = Literal["in_stock", "out_of_stock", "preorder", "backorder"]


class FetchSpec(_Model):
    """Limits on downloading one catalog image. ``allow_hosts`` names hosts fetched although
    they resolve to a loopback, private or other non-public address (an intranet image host,
    a test server); every other such host is refused."""

    timeout: float = Field(10.0, gt=0.0, le=300.0)
    max_bytes: int = Field(15_000_000, ge=1000)
    max_pixels: int = Field(40_000_000, ge=10_000)
    allow_hosts: list[str] = Field(default_factory=list)

    @field_validator("allow_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        hosts = [host.strip().lower().removeprefix("[").removesuffix("]") for host in value]
        bad = [host for host in hosts if not host or re.search(r"[/\\\s@?#]|^[^:]*:[^:]*$", host)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a host name or address: give it without scheme, "
                             "port or path, e.g. images.intranet or 10.0.0.5")
        return hosts


class CatalogSpec(_Model):
    """A product feed whose products an audience column (or a creative) names by id.

    ``format``: ``auto`` (by file name), ``merchant-tsv``, ``merchant-xml``, ``meta-csv``, ``csv``
    or ``parquet``; ``columns`` maps adgen's field names (``id``, ``title``, ``price``, …) to a
    plain table's columns. ``availability`` lists what is kept (the rest is left out with the
    reason). ``matte``: ``white`` cuts products out of a plain light background, ``model`` with
    an image-segmentation ``matte_model``, ``none`` uses the photo as it is."""

    path: Path
    format: Literal["auto", "merchant-tsv", "merchant-xml", "meta-csv", "csv", "parquet"] = "auto"
    columns: dict[str, str] = Field(default_factory=dict)
    availability: list[Availability] = Field(
        default_factory=lambda: list[Availability](["in_stock", "preorder", "backorder"]))
    images: FetchSpec = Field(default_factory=FetchSpec)
    matte: Literal["white", "model", "none"] = "white"
    matte_model: str | None = None

    @model_validator(mode="after")
    def _model_named(self) -> CatalogSpec:
        if (self.matte == "model") != (self.matte_model is not None):
            raise ValueError("matte: model needs matte_model (a hub id or folder of an "
                             "image-segmentation model), and matte_model needs matte: model")
        return self


def _check_locale(tag: str, what: str) -> str:
    from adgen.catalog.locales import normalise_locale

    try:
        return normalise_locale(tag)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}; use a language tag such as en, de_DE or ar") from None


class LocaleSpec(_Model):
    """Each customer's locale: from an audience ``column``, else one ``value`` for all, else
    ``default``. ``default`` is also the language of plain-text captions; ``translations`` is a
    folder of gettext catalogs; ``fallback: true`` uses the default locale's caption where a
    translation is missing (else that is an error)."""

    column: str | None = None
    value: str | None = None
    default: str = "en"
    fallback: bool = False
    translations: Path | None = None

    @field_validator("value", "default")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        return None if value is None else _check_locale(value, "locale")


class BrandKit(_Model):
    """Brand assets and style: logo (and a light variant for dark backgrounds), colours, font,
    and named product images that creatives or an audience column can refer to."""

    name: str = ""
    logo: Path | None = None
    logo_light: Path | None = None
    logo_position: LogoPosition = "top-right"
    logo_size: float = Field(0.18, gt=0.0, le=0.5)
    logo_margin: float = Field(0.04, ge=0.0, le=0.2)
    colors: list[str] = Field(default_factory=lambda: ["#1F2937", "#F59E0B", "#FFFFFF"])
    font: Path | None = None
    products: dict[str, Path] = Field(default_factory=dict)
    audio: Path | None = None

    @field_validator("colors")
    @classmethod
    def _hex_colors(cls, value: list[str]) -> list[str]:
        bad = [c for c in value if not _HEX.match(c)]
        if bad:
            raise ValueError(f"colours must be '#RRGGBB' hex strings, got {bad}")
        if not value:
            raise ValueError("give at least one brand colour, e.g. ['#0B3D91']")
        return value


class VideoOptions(_Model):
    """How a ``kind: video`` creative moves: a slow zoom or pan over the rendered still (the
    subject kept in frame), timed captions and an end card with the logo and call to action."""

    duration: float = Field(6.0, gt=0.0, le=120.0)
    fps: int = Field(30, ge=1, le=120)
    motion: Literal["zoom_in", "zoom_out", "pan_left", "pan_right", "none"] = "zoom_in"
    motion_amount: float = Field(0.12, ge=0.0, le=0.5)
    end_card: float = Field(1.5, ge=0.0)
    caption_in: float = Field(0.3, ge=0.0)
    caption_out: float | None = None
    crf: int = Field(20, ge=0, le=51)


class Creative(_Model):
    """One creative idea: prompt templates (inline or a file in the template folders) and
    caption templates (``headline``, ``cta`` and any other name)."""

    id: str
    prompt: str | None = None
    prompt_file: str | None = None
    negative_prompt: str = ""
    captions: dict[str, str | dict[str, str]] = Field(default_factory=dict)
    product: str | None = None
    kind: Literal["image", "video"] = "image"
    video: VideoOptions = Field(default_factory=VideoOptions)

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(
                f"creative id {value!r} must be 1-40 lower-case letters, digits, '-' or '_' "
                "(it is used in file names)"
            )
        return value

    @field_validator("captions")
    @classmethod
    def _caption_names(
        cls, value: dict[str, str | dict[str, str]]
    ) -> dict[str, str | dict[str, str]]:
        bad = [name for name in value if not _SLUG.match(name)]
        if bad:
            raise ValueError(f"caption names must be lower-case identifiers, got {bad}")
        for name, source in value.items():
            for tag in source if isinstance(source, dict) else ():
                _check_locale(tag, f"caption {name!r}")
        return value

    @model_validator(mode="after")
    def _one_prompt(self) -> Creative:
        if (self.prompt is None) == (self.prompt_file is None):
            raise ValueError("give exactly one of 'prompt' (inline template) or 'prompt_file'")
        return self


class RendererSpec(_Model):
    """Which renderer makes the pictures, and how."""

    name: Literal["offline", "diffusers", "diffusers-video"] = "offline"
    model: str | None = None
    steps: int = Field(4, ge=1, le=200)
    width: int = Field(1024, ge=64, le=4096)
    height: int = Field(1024, ge=64, le=4096)
    guidance: float = Field(0.0, ge=0.0, le=50.0)
    aspect: Literal["native", "extend", "crop"] = "native"
    """How placements of other shapes get their picture: ``native`` renders each aspect class
    at its own shape, ``extend`` outpaints the ``width`` x ``height`` render to each shape,
    ``crop`` cuts every placement from that one render."""
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"{value} is not a multiple of 8 (diffusion models need that)")
        return value


class PlacementSpec(_Model):
    """A placement reference with its encoding: ``feed_square``, ``300x250`` or ``WxH``."""

    placement: str
    format: ImageFormat = "jpeg"
    max_bytes: int | None = Field(None, gt=1000)
    max_duration: float | None = Field(None, gt=0.0)

    @field_validator("placement")
    @classmethod
    def _known(cls, value: str) -> str:
        try:
            resolve_placement(value)
        except CampaignError as exc:
            raise ValueError(str(exc)) from None
        return value

    def resolve(self) -> Placement:
        """The placement, with this spec's byte budget (else the preset's)."""
        placement = resolve_placement(self.placement)
        if self.max_bytes is None:
            return placement
        return Placement(
            placement.name, placement.width, placement.height, placement.safe, self.max_bytes
        )


class BackendSpec(_Model):
    """Where renders run: ``local`` (in-process, the default) or ``ray`` (a GPU pool). On Ray,
    ``post: cluster`` makes each render's assets on a CPU worker of the cluster, near the render,
    and writes them from there; ``post: driver`` makes them on the driver. ``post: gpu`` makes
    image assets on the driver's GPU (``post_device``): crops, resizes, compositing and JPEG
    encoding in torch, layout and text on the CPU (:mod:`adgen.post.gpu`)."""

    name: Literal["local", "ray"] = "local"
    address: str | None = None
    gpus: int | None = Field(None, ge=1)
    gpus_per_worker: float = Field(1.0, gt=0.0, le=8.0)
    cpu_workers: int | None = Field(None, ge=1)
    post: Literal["cluster", "driver", "gpu"] = "cluster"
    post_device: str = "cuda"
    """The torch device ``post: gpu`` uses (``cuda:1``; ``cpu`` runs the same code on the CPU)."""


class ExperimentSpec(_Model):
    """The A/B test: hashing seed, split weights over each segment's variants, holdout share."""

    name: str = "default"
    seed: str = "adgen"
    weights: list[float] | None = None
    holdout: float = Field(0.0, ge=0.0, lt=1.0)


class AssignmentsTableSpec(_Model):
    """A database table that mirrors the assignment ledger for the CRM: after each run,
    refresh and assign (once the output is committed), one row per experiment and customer is
    upserted in one transaction (see :mod:`adgen.experiments.table`). ``url`` is a SQLAlchemy
    URL, its password from the environment, as for ``audience.sql``."""

    url: str
    table: str = "adgen_assignments"

    @field_validator("url")
    @classmethod
    def _secret_free(cls, value: str) -> str:
        if value.partition("?")[0] in ("duckdb://", "duckdb:///", "duckdb:///:memory:"):
            raise ValueError("an in-memory DuckDB keeps nothing: give a file, "
                             "duckdb:///assignments.duckdb")
        return check_url(value)

    @field_validator("table")
    @classmethod
    def _table_name(cls, value: str) -> str:
        if not TABLE_NAME.match(value):
            raise ValueError(f"{value[:80]!r} is not a table name adgen can create: lower-case "
                             "letters, digits and '_', optionally schema.table")
        return value


class RefreshSpec(_Model):
    """How results are judged and variants refreshed; ``schedule`` is a cron expression for
    ``adgen schedule``."""

    schedule: str | None = None
    rule: Literal["frequentist", "bayesian"] = "frequentist"
    alpha: float = Field(0.05, gt=0.0, lt=0.5)
    correction: Literal["holm", "bh"] = "holm"
    sequential: bool = False
    top_two: bool = False
    floor: float = Field(0.01, ge=0.0, lt=0.5)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            from croniter import croniter

            if not croniter.is_valid(value):
                raise ValueError(
                    f"{value!r} is not a cron expression (e.g. '0 6 * * 1' = Mondays 06:00)"
                )
        return value


class ProvenanceSpec(_Model):
    """Machine-readable marking of generated assets: IPTC XMP always; an invisible watermark
    (``watermark``: ``auto`` = on for the renderers that run a trained model, off for the
    offline one); C2PA when a certificate chain and key are given. ``visible_label``: the
    label drawn on every ad (``true``) or on the listed placements only."""

    label: str = "AI-generated"
    visible_label: bool | list[str] = False
    watermark: bool | Literal["auto"] = "auto"
    c2pa_cert: Path | None = None
    c2pa_key: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> ProvenanceSpec:
        if (self.c2pa_cert is None) != (self.c2pa_key is None):
            raise ValueError("give both c2pa_cert (PEM chain) and c2pa_key (PEM key), or neither")
        return self

    def labelled(self, placement: Placement) -> bool:
        """Whether ads for ``placement`` carry the visible label."""
        if isinstance(self.visible_label, bool):
            return self.visible_label
        return placement.name in {resolve_placement(ref).name for ref in self.visible_label}


class GuardrailSpec(_Model):
    """What text may reach prompts and captions, and the brand rules checked on every asset."""

    blocked: list[str] = Field(default_factory=list)
    prompt_columns: list[str] = Field(default_factory=list)
    allow_pii: bool = False
    phone_region: str | None = Field("US", pattern=r"^[A-Z]{2}$")
    max_prompt_chars: int = Field(2000, ge=10, le=100_000)
    max_caption_chars: int = Field(500, ge=1, le=10_000)
    min_contrast: float = Field(4.5, ge=1.0, le=21.0)


class QualitySpec(_Model):
    """The quality gate run on every render (see :mod:`adgen.quality`). A threshold set to
    ``null`` turns its check off; ``safety`` and ``text`` default to ``auto``: on for the
    generative renderers (diffusers, diffusers-video), off for the offline one. A render that
    fails a check is rendered again with the next seed, up to ``retries`` times."""

    enabled: bool = True
    retries: int = Field(2, ge=0, le=20)
    clip_model: str | None = None
    min_alignment: float | None = Field(0.2, ge=-1.0, le=1.0)
    safety: bool | Literal["auto"] = "auto"
    safety_model: str = "CompVis/stable-diffusion-safety-checker"
    max_unsafe: float = Field(0.0, ge=-1.0, le=1.0)
    text: bool | Literal["auto"] = "auto"
    max_text_area: float = Field(0.002, ge=0.0, le=1.0)
    max_duplicate_distance: int | None = Field(6, ge=0, le=63)
    min_brightness: float | None = Field(0.04, ge=0.0, le=1.0)
    max_brightness: float | None = Field(0.96, ge=0.0, le=1.0)
    min_contrast: float | None = Field(0.03, ge=0.0, le=1.0)
    min_sharpness: float | None = Field(0.0002, ge=0.0)
    device: str | None = None


META_CTA_TYPES = (
    "SHOP_NOW", "LEARN_MORE", "SIGN_UP", "BOOK_NOW", "BUY_NOW", "GET_OFFER", "ORDER_NOW",
    "CONTACT_US", "DOWNLOAD", "SUBSCRIBE", "APPLY_NOW", "GET_QUOTE", "SEE_MORE", "WATCH_MORE",
)
"""Meta call-to-action types adgen offers (a subset of the Marketing API's enum)."""
ExportFormat = Literal["meta", "google", "html5", "csv"]


def _is_web_address(text: str) -> bool:
    """An http(s) URL with a host (and a valid port), without spaces, quotes or brackets."""
    if not re.match(r"^https?://[^\s\"'<>\\]+$", text):
        return False
    try:
        parts = urlsplit(text)
        return bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port out of range, a broken IPv6 literal
        return False


class ExportSpec(_Model):
    """Upload files for ad platforms, written to ``<output>/exports/`` after every run
    (``to``) or by ``adgen export``. Nothing is uploaded; every ad is created paused."""

    to: list[ExportFormat] = Field(default_factory=list)
    url: str | None = None
    asset_base_url: str | None = None
    business_name: str | None = None
    meta_objective: Literal[
        "OUTCOME_TRAFFIC", "OUTCOME_SALES", "OUTCOME_AWARENESS", "OUTCOME_ENGAGEMENT",
        "OUTCOME_LEADS",
    ] = "OUTCOME_TRAFFIC"
    meta_cta: str = "SHOP_NOW"
    audiences: bool = False
    email_column: str | None = None
    phone_column: str | None = None
    phone_country_code: str | None = Field(None, pattern=r"^[1-9][0-9]{0,2}$")
    banner_seconds: float = Field(5.0, ge=2.0, le=15.0)
    banner_loops: int = Field(2, ge=1, le=3)
    require_approval: bool | None = Field(
        None, description="publish only the variants approved in review; default: true when "
        "the campaign has a review section")

    @field_validator("url", "asset_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not _is_web_address(value):
            raise ValueError(
                f"{value[:200]!r} is not a web address: give a full http(s):// URL with a host, "
                "without spaces or quotes"
            )
        return value

    @field_validator("meta_cta")
    @classmethod
    def _cta(cls, value: str) -> str:
        if value not in META_CTA_TYPES:
            raise ValueError(f"meta_cta {value!r} is not one of {', '.join(META_CTA_TYPES)}")
        return value

    @model_validator(mode="after")
    def _banner_length(self) -> ExportSpec:
        needs_url = [f for f in self.to if f != "csv"]
        if needs_url and self.url is None:
            raise ValueError(
                f"export.to has {', '.join(needs_url)}, which need a landing page: set "
                "export.url (https://…)"
            )
        if self.banner_seconds * self.banner_loops > 30:
            raise ValueError(
                f"banners would animate {self.banner_seconds * self.banner_loops:g} s "
                f"({self.banner_loops} loops of {self.banner_seconds:g} s); Google Ads allows "
                "at most 30 s: lower banner_seconds or banner_loops"
            )
        return self


class ReviewSpec(_Model):
    """People approve or reject each variant (``adgen review``). With this section, exports
    publish only approved variants unless ``export.require_approval`` is false; a run renders
    rejected variants again with their next seed either way."""

    comment_as_negative: bool = False


class CampaignSpec(_Model):
    """A whole campaign. Build it from YAML with :func:`load_campaign`."""

    name: str
    audience: AudienceSpec = Field(default_factory=AudienceSpec)
    brand: BrandKit = Field(default_factory=BrandKit)
    creatives: list[Creative]
    variants: int = Field(2, ge=1, le=100)
    renderer: RendererSpec = Field(default_factory=RendererSpec)
    backend: BackendSpec = Field(default_factory=BackendSpec)
    placements: list[PlacementSpec] = Field(
        default_factory=lambda: [PlacementSpec(placement="feed_square")], min_length=1
    )
    output: Path | str | None = Field(
        None, description="a local folder or an object-store URL (s3://, gs://, ...)")
    template_dirs: list[Path] = Field(default_factory=lambda: [Path("templates")])
    experiment: ExperimentSpec = Field(default_factory=ExperimentSpec)
    refresh: RefreshSpec = Field(default_factory=RefreshSpec)
    provenance: ProvenanceSpec = Field(default_factory=ProvenanceSpec)
    guardrails: GuardrailSpec = Field(default_factory=GuardrailSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    catalog: CatalogSpec | None = None
    locale: LocaleSpec = Field(default_factory=LocaleSpec)
    quality: QualitySpec = Field(default_factory=QualitySpec)
    review: ReviewSpec | None = None
    assignments_table: AssignmentsTableSpec | None = None
    report: bool = Field(True, description="write review.html after each run")
    source: Path | None = Field(None, description="the YAML file this spec was loaded from")

    @field_validator("name")
    @classmethod
    def _name_slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError(
                f"campaign name {value!r} must be 1-40 lower-case letters, digits, '-' or '_'"
            )
        return value

    @field_validator("output", mode="before")
    @classmethod
    def _output_path_or_url(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and is_url(value)):
            return value
        text = str(value)
        return Path(text.removeprefix("file://")) if isinstance(value, str | Path) else value

    @field_validator("review", mode="before")
    @classmethod
    def _empty_review(cls, value: Any) -> Any:
        return {} if value is None else value  # a bare `review:` turns review on

    @field_validator("placements", mode="before")
    @classmethod
    def _short_placements(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"placement": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> CampaignSpec:
        for what, ids in (
            ("creative id", [c.id for c in self.creatives]),
            ("placement", [p.resolve().name for p in self.placements]),
        ):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"duplicate {what} {dupes}: each must be unique")
        if not self.creatives:
            raise ValueError("a campaign needs at least one creative")
        labelled = self.provenance.visible_label
        names = [p.resolve().name for p in self.placements]
        for ref in labelled if isinstance(labelled, list) else []:
            try:
                known = resolve_placement(ref).name in names
            except CampaignError:
                known = False
            if not known:
                raise ValueError(f"provenance.visible_label names placement {ref!r}, which is "
                                 f"not one of the campaign's placements ({', '.join(names)})")
        weights = self.experiment.weights
        if weights is not None and len(weights) != self.arms:
            raise ValueError(
                f"experiment.weights has {len(weights)} values but each segment has {self.arms} "
                f"variants ({len(self.creatives)} creatives × {self.variants} variants); give "
                f"{self.arms}"
            )
        if weights is not None:
            try:
                check_weights(weights, self.arms)
            except CampaignError as exc:
                raise ValueError(str(exc)) from None
        for creative in self.creatives:
            if self.renderer.name == "diffusers-video" and creative.kind != "video":
                raise ValueError(
                    f"creative {creative.id!r} is an image but renderer diffusers-video makes "
                    "clips: set kind: video, or use the offline or diffusers renderer"
                )
            for spec in self.placements if creative.kind == "video" else []:
                if spec.max_duration is not None and creative.video.duration > spec.max_duration:
                    raise ValueError(
                        f"creative {creative.id!r} lasts {creative.video.duration:g} s but "
                        f"placement {spec.placement!r} allows at most {spec.max_duration:g} s; "
                        "shorten video.duration or raise max_duration"
                    )
            if creative.product and creative.product not in self.brand.products \
                    and self.catalog is None:
                raise ValueError(
                    f"creative {creative.id!r} names product {creative.product!r}, which is not "
                    f"in brand.products ({sorted(self.brand.products) or 'none defined'})"
                )
        return self

    @property
    def approval_required(self) -> bool:
        """Whether exports publish only approved variants: ``export.require_approval``, by
        default true when the campaign has a ``review`` section."""
        required = self.export.require_approval
        return self.review is not None if required is None else required

    @property
    def arms(self) -> int:
        """Variants per segment: creatives × variants."""
        return len(self.creatives) * self.variants

    @property
    def output_location(self) -> str:
        """Where the run's outputs go: a local path or an object-store URL."""
        if isinstance(self.output, str):
            return self.output
        return str(self.output if self.output is not None else Path("out") / self.name)

    @property
    def output_dir(self) -> Path:
        """The local folder of the outputs: the output itself, or a URL output's mirror of its
        small files (see :func:`adgen.output.mirror.open_output`)."""
        return output_folder(self.output_location)

    def resolve_paths(self, base: Path) -> CampaignSpec:
        """A copy whose relative paths are made absolute against ``base``."""

        def absolute(path: Path | None) -> Path | None:
            return None if path is None else Path(os.path.normpath(base / path))

        sql = self.audience.sql and self.audience.sql.model_copy(
            update={"url": resolve_url(self.audience.sql.url, base)})
        audience = self.audience.model_copy(update={"path": absolute(self.audience.path),
                                                    "sql": sql})
        table = self.assignments_table and self.assignments_table.model_copy(
            update={"url": resolve_url(self.assignments_table.url, base)})
        brand = self.brand.model_copy(
            update={
                "logo": absolute(self.brand.logo),
                "logo_light": absolute(self.brand.logo_light),
                "font": absolute(self.brand.font),
                "audio": absolute(self.brand.audio),
                "products": {k: absolute(v) for k, v in self.brand.products.items()},
            }
        )
        provenance = self.provenance.model_copy(update={
            "c2pa_cert": absolute(self.provenance.c2pa_cert),
            "c2pa_key": absolute(self.provenance.c2pa_key),
        })
        catalog = self.catalog and self.catalog.model_copy(
            update={"path": absolute(self.catalog.path)})
        locale = self.locale.model_copy(update={"translations": absolute(self.locale.translations)})
        return self.model_copy(
            update={
                "catalog": catalog,
                "locale": locale,
                "provenance": provenance,
                "audience": audience,
                "assignments_table": table,
                "brand": brand,
                "output": self.output if isinstance(self.output, str)
                else absolute(Path(self.output_location)),
                "template_dirs": [absolute(d) for d in self.template_dirs],
            }
        )


def validation_message(error: ValidationError, where: str) -> str:
    """A pydantic error as one line per problem: ``where: field.path: what is wrong``."""
    lines = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check its spelling; see the README's campaign format)"
        lines.append(f"{where}: {loc}: {message}")
    return "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``dotted.path=VALUE`` into its path and VALUE, parsed as YAML where it is YAML
    (numbers, booleans, null, lists, mappings) and taken as text otherwise."""
    if "=" not in text:
        raise CampaignError(f"--set {text!r}: expected dotted.path=VALUE, e.g. variants=3")
    path, raw = text.split("=", 1)
    keys = [k for k in path.strip().split(".") if k]
    if not keys:
        raise CampaignError(f"--set {text!r}: the field path before '=' is empty")
    try:
        value = _load_yaml(raw, f"--set {text!r}") if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML (e.g. a template such as "Hi {{ region }}"): the text itself
    return keys, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``--set dotted.path=VALUE`` overrides to raw campaign data (lists take indices)."""
    for text in overrides:
        keys, value = parse_override(text)
        node: Any = data
        for depth, key in enumerate(keys):
            last = depth == len(keys) - 1
            if isinstance(node, list):
                if not key.isdigit() or int(key) >= len(node):
                    raise CampaignError(
                        f"--set {text!r}: {'.'.join(keys[:depth]) or 'list'} has "
                        f"{len(node)} items; {key!r} is not an index of it"
                    )
                if last:
                    node[int(key)] = value
                else:
                    node = node[int(key)]
            elif isinstance(node, dict):
                if last:
                    node[key] = value
                else:
                    node = node.setdefault(key, {})
            else:
                raise CampaignError(
                    f"--set {text!r}: {'.'.join(keys[:depth])} is a value, not a section"
                )
    return data


def campaign_from_dict(
    data: Mapping[str, Any], *, base_dir: Path | None = None, where: str = "campaign",
    overrides: Iterable[str] = (),
) -> CampaignSpec:
    """Validate raw campaign data (as read from YAML) into a spec with absolute paths."""
    raw = apply_overrides(_deep_copy(dict(data)), overrides)
    try:
        spec = CampaignSpec.model_validate(raw)
    except ValidationError as exc:
        raise CampaignError(validation_message(exc, where)) from None
    return spec.resolve_paths((base_dir or Path.cwd()).resolve())


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


MAX_YAML_NODES = 100_000
MAX_CAMPAIGN_CHARS = 5_000_000


def _load_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` that first counts, from the parser's events and without expanding
    anything, how many values the document holds once its aliases (``*name``) are expanded, and
    refuses more than :data:`MAX_YAML_NODES` (an "alias bomb" grows exponentially)."""
    if len(text) > MAX_CAMPAIGN_CHARS:
        raise CampaignError(f"{where}: {len(text):,} characters of YAML; keep it under "
                            f"{MAX_CAMPAIGN_CHARS:,}")
    sizes: dict[str, int] = {}
    stack: list[list[Any]] = [[None, 0]]  # [anchor, expanded size] per open collection
    for event in yaml.parse(text):
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, 1])
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, size = stack.pop()
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, 1
        elif isinstance(event, yaml.AliasEvent):
            anchor, size = None, sizes.get(str(event.anchor), 1)
        else:
            continue
        if anchor is not None:
            sizes[str(anchor)] = size
        stack[-1][1] += size
        if stack[-1][1] > MAX_YAML_NODES:
            raise CampaignError(f"{where}: the YAML expands to more than {MAX_YAML_NODES:,} "
                                "values through its aliases (*name); write the values out or "
                                "use fewer aliases")
    return yaml.safe_load(text)


def load_campaign(path: str | Path, *, overrides: Iterable[str] = ()) -> CampaignSpec:
    """Read and validate a campaign YAML file; ``overrides`` are ``dotted.path=VALUE`` strings.

    Raises :class:`CampaignError` naming the file and every invalid field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CampaignError(f"{path}: campaign file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CampaignError(f"{path}: cannot read the campaign file ({exc})") from None
    try:
        data = _load_yaml(text, str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise CampaignError(f"{path}:{line}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise CampaignError(
            f"{path}: a campaign file must be a YAML mapping (name:, creatives:, …)"
        )
    spec = campaign_from_dict(data, base_dir=path.parent, where=str(path), overrides=overrides)
    return spec.model_copy(update={"source": path.resolve()})
