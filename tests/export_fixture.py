"""A small finished campaign with exports, shared by the export tests: 3 regions × 1 variant,
placements for Meta, Google and two IAB banner sizes, an audience with e-mails and phones,
and a CTA caption that starts like a spreadsheet formula."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import adgen
from tests.conftest import base_campaign

URL = "https://shop.example/spring?utm_source=adgen&x=1"
AUDIENCE = """customer_id,first_name,email,phone,region,tier,spend
c1,Ana,  Ana.Lopez@Example.COM ,+1 (650) 555-0100,north,gold,10
c2,Ben,ben@example.com,0151 2345 6789,north,gold,30
c3,Chloé,not-an-email,,south,silver,5
c4,Dmitri,dmitri@example.org,0044 20 7183 8750,south,silver,7
c5,Emeka,,,east,gold,1
c6,Fatima,fatima@example.net,555-0199,east,gold,100
"""
CTA = "=Shop now"


def campaign_data(root: Path, **export: Any) -> dict[str, Any]:
    data = base_campaign(root)
    (root / "audience.csv").write_text(AUDIENCE, encoding="utf-8")
    data["audience"] = {"path": "audience.csv", "segment_by": ["region"]}
    data["creatives"][0]["prompt"] = "a bottle in the {{ region }}, spring light"
    data["creatives"][0]["captions"] = {"headline": "Hello {{ region | title }}", "cta": CTA}
    data["variants"] = 1
    data["placements"] = ["feed_square", "feed_portrait", "story", "display_1.91", "300x250",
                          "728x90"]
    data["export"] = {"to": ["html5", "meta", "google", "csv"], "url": URL,
                      "banner_seconds": 2, "banner_loops": 1, **export}
    return data


def make_output(root: Path, **export: Any) -> adgen.RunResult:
    """Run the campaign under ``root`` (which writes its exports) and return the result."""
    root.mkdir(parents=True, exist_ok=True)
    spec = adgen.campaign_from_dict(campaign_data(root, **export), base_dir=root)
    return adgen.run(spec)


def load(root: Path, **export: Any) -> adgen.CampaignSpec:
    return adgen.campaign_from_dict(campaign_data(root, **export), base_dir=root)
