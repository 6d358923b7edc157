"""What every export writer gets and gives back.

A writer is a plain function ``(ExportContext) -> Written``: it builds the files of one
platform in memory and lists the ads it left out and why. :func:`adgen.export.export` writes
them atomically under ``<output>/exports/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from adgen.errors import CampaignError
from adgen.export.source import ExportSource
from adgen.spec import CampaignSpec, ExportSpec


@dataclass(frozen=True)
class ExportContext:
    """The output folder read once, the export settings, and (when given) the campaign and
    its audience (needed for banners and customer lists)."""

    source: ExportSource
    settings: ExportSpec
    campaign: CampaignSpec | None = None
    audience: pd.DataFrame | None = None
    id_column: str = "customer_id"
    previous: dict[str, str] = field(default_factory=dict)
    """Content keys of the files the last export of a format wrote (to reuse unchanged ones)."""

    def url(self, what: str) -> str:
        """The landing page; a :class:`CampaignError` saying how to set it if there is none."""
        if self.settings.url is None:
            raise CampaignError(
                f"{what} needs a landing page: set export.url in the campaign, or pass "
                "--url https://… (url=… in Python)"
            )
        return self.settings.url

    def need_campaign(self, what: str) -> CampaignSpec:
        if self.campaign is None:
            raise CampaignError(
                f"{what} needs the campaign (brand, placements): run `adgen export CAMPAIGN.yaml "
                "--to …` rather than the output folder (campaign=… in Python)"
            )
        return self.campaign

    def need_audience(self) -> pd.DataFrame:
        if self.audience is None:
            raise CampaignError(
                "export.audiences needs the audience: export from the campaign "
                "(`adgen export CAMPAIGN.yaml`), or pass audience=… in Python"
            )
        return self.audience


@dataclass
class Written:
    """One format's files (path under ``exports/`` → content), the ads left out with the
    reason, and warnings that do not stop an ad (text longer than a platform recommends)."""

    files: dict[str, bytes | str] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)

    def skip(self, variant_id: str, reason: str, placement: str = "") -> None:
        entry = {"variant_id": variant_id, "reason": reason}
        if placement:
            entry["placement"] = placement
        self.skipped.append(entry)
