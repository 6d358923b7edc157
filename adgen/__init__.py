"""adgen: programmatic, personalised ad generation.

A campaign (YAML or :class:`CampaignSpec`) and an audience (CSV, Parquet, a DataFrame or a SQL
query, :class:`SqlSpec`) go in; placement-ready ad variants, a manifest and a
customer-to-variant assignment come out::

    import adgen

    campaign = adgen.load_campaign("campaigns/northwind-spring.yaml")
    print(adgen.plan(campaign).summary())
    result = adgen.run(campaign, out="out/spring")
    result.manifest.head()
"""

from adgen.errors import (
    AdgenError,
    AssetError,
    AudienceError,
    CampaignError,
    FFmpegError,
    OutputError,
    PostProcessError,
    RenderError,
    ResultsError,
    ReviewError,
    StoreError,
    TemplateError,
)
from adgen.experiments.analysis import Analysis, ResultsSource, analyze, write_analysis
from adgen.experiments.explain import Explanation, explain
from adgen.export import ExportResult, export
from adgen.jobs import RenderJob
from adgen.pipeline import RefreshResult, RunResult, assign, refresh, run, schedule, validate
from adgen.placements import PRESETS, Placement, resolve_placement
from adgen.planning import Plan
from adgen.planning import make_plan as plan
from adgen.provenance.verify import Verification, verify
from adgen.review.app import serve as serve_review
from adgen.review.sheet import write_report
from adgen.review.transfer import export_decisions, import_decisions
from adgen.spec import CampaignSpec, SqlSpec, campaign_from_dict, load_campaign
from adgen.version import __version__

__all__ = [
    "PRESETS",
    "AdgenError",
    "Analysis",
    "AssetError",
    "AudienceError",
    "CampaignError",
    "CampaignSpec",
    "Explanation",
    "ExportResult",
    "FFmpegError",
    "OutputError",
    "Placement",
    "Plan",
    "PostProcessError",
    "RefreshResult",
    "RenderError",
    "RenderJob",
    "ResultsError",
    "ResultsSource",
    "ReviewError",
    "RunResult",
    "SqlSpec",
    "StoreError",
    "TemplateError",
    "Verification",
    "__version__",
    "analyze",
    "assign",
    "campaign_from_dict",
    "explain",
    "export",
    "export_decisions",
    "import_decisions",
    "load_campaign",
    "plan",
    "refresh",
    "resolve_placement",
    "run",
    "schedule",
    "serve_review",
    "validate",
    "verify",
    "write_analysis",
    "write_report",
]
