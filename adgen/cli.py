"""The ``adgen`` command line: a thin layer over the public API.

User mistakes (any :class:`adgen.AdgenError`) print one line per problem and exit with code 2
(a store outage mid-command, :class:`adgen.StoreError`: 1), as do usage mistakes (an unknown
option or command, a missing argument, a bad value: click's usage line and the error); anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

import adgen
from adgen.assets import brand_style
from adgen.errors import MAX_LISTED
from adgen.output.files import atomic_write_text, safe_csv
from adgen.output.lock import WAIT_ENV
from adgen.output.store import join, open_store
from adgen.preflight import preflight
from adgen.provenance.verify import as_json as verify_json
from adgen.renderers import RENDERERS
from adgen.review.sheet import REPORT_NAME
from adgen.sources.sql import resolve_url
from adgen.spec import validation_message
from adgen.terminal import analysis_table

app = typer.Typer(
    name="adgen",
    help="Programmatic, personalised ad generation: campaign + audience in, ad variants out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: flags shown as flags on every typer version
)
console = Console()
err_console = Console(stderr=True)

CampaignArg = Annotated[Path, typer.Argument(metavar="CAMPAIGN", help="Campaign YAML file.")]
AudienceOpt = Annotated[
    Path | None,
    typer.Option("--audience", metavar="PATH",
                 help="Audience CSV/Parquet overriding the campaign's.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="dotted.path=VALUE",
                 help="Override a campaign field (repeatable)."),
]
ResetLedgerOpt = Annotated[
    bool, typer.Option("--reset-ledger", help="Start the assignment ledger over: every "
                       "customer is hashed again (the old parts are kept aside).")]


@app.callback()
def _options(
    wait: Annotated[
        float | None,
        typer.Option("--wait", metavar="SECONDS",
                     help="Seconds to wait for an output folder another adgen command holds "
                     "(default 0: fail at once; env ADGEN_LOCK_WAIT)."),
    ] = None,
) -> None:
    """Programmatic, personalised ad generation: campaign + audience in, ad variants out."""
    if wait is not None:
        os.environ[WAIT_ENV] = str(wait)


def _load(campaign: Path, overrides: list[str] | None) -> adgen.CampaignSpec:
    return adgen.load_campaign(campaign, overrides=overrides or ())


class RateColumn(ProgressColumn):
    """Items per second (images/s for renders and GPU workers, assets/s for post)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:6.1f}/s" if speed else "      /s", style="progress.data.speed")


@app.command()
def validate(
    campaign: CampaignArg, audience: AudienceOpt = None, set_: SetOpt = None
) -> None:
    """Check a campaign, its audience, templates and brand assets.

    Exits 0 if all is well, 2 with every problem listed if not.
    """
    spec = _load(campaign, set_)
    plan = adgen.validate(spec, audience=audience)
    summary = plan.summary()
    console.print(
        f"[green]ok[/green] {spec.name}: {summary['customers']} customers, "
        f"{summary['segments']} segments, {summary['variants']} variants, {summary['jobs']} jobs"
    )
    _print_left_out(plan)


@app.command()
def plan(
    campaign: CampaignArg,
    audience: AudienceOpt = None,
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Print what a run would do, without rendering.

    Counts customers, segments, creatives, variants, jobs, cached renders and assets that would
    fail; lists blocked variants.
    """
    spec = _load(campaign, set_)
    result = adgen.plan(spec, audience)
    checked = preflight(result, brand_style(spec))
    checked.raise_problems()
    summary = {**result.summary(), "failing_assets": len(checked.failing)}
    if as_json:
        typer.echo(json.dumps(summary))
        return
    table = Table("", "count", title=f"plan: {campaign}")
    for key, value in summary.items():
        table.add_row(key, str(value))
    console.print(table)
    for variant_id, reason in result.blocked.items():
        console.print(f"[yellow]blocked[/yellow] {variant_id}: {reason}", highlight=False)
    for line in checked.lines(spec):
        console.print(f"[red]would fail[/red] {line}", highlight=False, soft_wrap=True)
    _print_left_out(result)


def _print_left_out(plan: adgen.Plan) -> None:
    left_out = plan.products_left_out
    for product_id, reason in list(left_out.items())[:MAX_LISTED]:
        console.print(f"[yellow]left out[/yellow] product {product_id}: {reason}",
                      highlight=False)
    if len(left_out) > MAX_LISTED:
        console.print(f"[yellow]left out[/yellow] {len(left_out) - MAX_LISTED} more products "
                      "(run.json lists them all after a run)", highlight=False)


@app.command()
def run(
    campaign: CampaignArg,
    audience: AudienceOpt = None,
    out: Annotated[
        str | None, typer.Option("--out", metavar="DIR|URL", help="Output folder or URL.")
    ] = None,
    renderer: Annotated[
        str | None,
        typer.Option("--renderer", metavar="NAME", help=f"Renderer: {', '.join(RENDERERS)}.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", metavar="ID_OR_PATH",
                     help="Model id or local folder for the renderer.")
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option("--backend", metavar="NAME", help="Where renders run: local or ray.")
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", metavar="ADDR",
                     help="Ray cluster address (default: RAY_ADDRESS, or a new local cluster)."),
    ] = None,
    gpus: Annotated[
        int | None,
        typer.Option("--gpus", metavar="N", help="Use at most N GPUs of the Ray cluster.")
    ] = None,
    set_: SetOpt = None,
    reset_ledger: ResetLedgerOpt = False,
) -> None:
    """Render a campaign into placement-ready assets.

    Writes the assets, a manifest, the assignments and the review sheet to the output folder.
    """
    spec = _load(campaign, set_)
    columns = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
               RateColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        result = adgen.run(spec, audience=audience, out=out, renderer=renderer, model=model,
                           backend=backend, ray_address=ray_address, gpus=gpus,
                           progress=progress, reset_ledger=reset_ledger)
    summary = result.summary()
    console.print(
        f"[green]done[/green] {spec.name}: {summary['rendered']} rendered, "
        f"{summary['cached']} cached; {summary['assets_written']} assets written, "
        f"{summary['assets_reused']} reused; {summary['assigned_customers']} customers assigned "
        f"-> {result.location}"
    )
    if spec.review is not None or summary["approved"] or summary["rejected"]:
        console.print(f"review: {summary['approved']} approved, {summary['rejected']} rejected, "
                      f"{summary['pending']} pending (adgen review {result.location})",
                      highlight=False, soft_wrap=True)
    blocked = result.blocked_reasons()
    if blocked:
        console.print(f"[yellow]blocked[/yellow] {summary['blocked']} of {summary['variants']} "
                      "variants (no assets, no customers; manifest.csv names them):",
                      soft_wrap=True)
        _print_reasons(console, blocked)
    failed = result.failure_reasons()
    if failed:
        made = len(result.manifest) - summary["blocked"]  # a blocked variant has one row
        err_console.print(f"[red]failed[/red] {len(result.failures)} of {made} assets (the "
                          "rest is written; run again to retry only these):")
        _print_reasons(err_console, failed)
        raise typer.Exit(1)


def _print_reasons(to: Console, reasons: dict[str, int]) -> None:
    """``count × reason`` lines, most frequent first, the first MAX_LISTED of them."""
    for reason, count in list(reasons.items())[:MAX_LISTED]:
        to.print(f"  {count} × {reason}", highlight=False, soft_wrap=True)
    if len(reasons) > MAX_LISTED:
        to.print(f"  and {len(reasons) - MAX_LISTED} more reasons (manifest.csv)")


@app.command()
def assign(
    campaign: CampaignArg,
    audience: AudienceOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", help="CSV file to write (default: print it).")
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Write the deterministic customer → variant assignment.

    CSV, formula-safe; printed unless --out names a file.
    """
    frame = adgen.assign(_load(campaign, set_), audience=audience)
    text = safe_csv(frame)
    if out is None:
        typer.echo(text, nl=False)
        return
    atomic_write_text(out, text)
    assigned = int((frame["variant_id"] != "").sum())
    console.print(f"[green]wrote[/green] {out}: {len(frame)} customers, {assigned} assigned")


ResultsOpt = Annotated[
    Path | None,
    typer.Option("--results", metavar="FILE",
                 help="Results: CSV/Parquet per variant or per customer, a Meta Ads Manager "
                 "export (CSV/XLSX) or a Google Ads ad report (CSV).")
]
ResultsSqlOpt = Annotated[
    str | None,
    typer.Option("--results-sql", metavar="URL",
                 help="Results from a database instead (a SQLAlchemy URL; its password from the "
                 "environment: ${VAR} or the driver's own variable), with --query.")
]
QueryOpt = Annotated[
    str | None,
    typer.Option("--query", metavar="SQL",
                 help="The --results-sql query: rows per variant or per customer, as the CSV.")
]


def _results(results: Path | None, url: str | None, query: str | None) -> adgen.ResultsSource:
    """What --results or --results-sql with --query give."""
    if results is not None and url is None and query is None:
        return results
    if results is not None or url is None:
        raise typer.BadParameter("give --results FILE, or --results-sql URL with --query SQL")
    if query is None:
        raise typer.BadParameter("--results-sql needs --query SQL")
    try:
        return adgen.SqlSpec(url=resolve_url(url, Path.cwd()), query=query)
    except ValidationError as exc:
        raise adgen.ResultsError(validation_message(exc, "--results-sql")) from None


def _print_analysis(analysis: adgen.Analysis) -> None:
    table, left_out = analysis_table(analysis, console)
    console.print(table)
    if left_out:
        console.print(f"(left out at this width: {', '.join(left_out)}; see analysis.csv)",
                      style="dim", highlight=False)
    for warning in analysis.srm_warnings:
        err_console.print(f"[bold red]warning:[/bold red] {warning}")
    for note in analysis.notes:
        err_console.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)


@app.command()
def analyze(
    target: Annotated[str, typer.Argument(
        metavar="OUT_DIR|CAMPAIGN",
        help="Output folder or URL of a run, or the campaign YAML.")],
    results: ResultsOpt = None,
    results_sql: ResultsSqlOpt = None,
    query: QueryOpt = None,
) -> None:
    """Analyse results: uplift, intervals, p-values, chance to win.

    Checks sample ratio mismatch too; writes analysis.csv, .json and .png.
    """
    source = _results(results, results_sql, query)
    is_campaign = Path(target).suffix.lower() in {".yaml", ".yml"}
    spec = adgen.load_campaign(Path(target)) if is_campaign else None
    analysis = adgen.analyze(spec or target, source)
    _print_analysis(analysis)
    out_dir = spec.output_location if spec else target
    written = adgen.write_analysis(analysis, out_dir)
    console.print("wrote " + ", ".join(join(out_dir, p.name) for p in written))


@app.command()
def refresh(campaign: CampaignArg, results: ResultsOpt = None,
            results_sql: ResultsSqlOpt = None, query: QueryOpt = None, set_: SetOpt = None,
            reset_ledger: ResetLedgerOpt = False) -> None:
    """Retire losers, re-weight traffic, render replacements.

    Then re-assigns customers (sticky: only those of retired variants move).
    """
    source = _results(results, results_sql, query)
    spec = _load(campaign, set_)
    outcome = adgen.refresh(spec, source, reset_ledger=reset_ledger)
    if outcome.analysis is None:
        console.print(f"finished refresh {outcome.log['refresh']}, which was interrupted (its "
                      "decision stands; run refresh again to act on newer results)")
    else:
        _print_analysis(outcome.analysis)
        adgen.write_analysis(outcome.analysis, spec.output_location)
    weights = ", ".join(f"{w:.3f}" for w in outcome.weights) if outcome.weights else "unchanged"
    console.print(
        f"[green]refreshed[/green] {spec.name}: retired {len(outcome.retired)}, kept "
        f"{len(outcome.kept)}, rendered {outcome.run.rendered}; weights {weights} "
        f"({outcome.weights_note})"
    )


@app.command()
def schedule(
    campaign: CampaignArg,
    results: ResultsOpt = None,
    results_sql: ResultsSqlOpt = None,
    query: QueryOpt = None,
    max_runs: Annotated[
        int | None,
        typer.Option("--max-runs", metavar="N", help="Stop after N refreshes (default: never).")
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Run refreshes on the campaign's refresh.schedule (cron).

    Runs in the foreground until stopped or --max-runs.
    """
    source = _results(results, results_sql, query)
    spec = _load(campaign, set_)
    adgen.schedule(spec, source, max_runs=max_runs, on_event=console.print)


@app.command()
def explain(
    out_dir: Annotated[str, typer.Argument(metavar="OUT_DIR",
                                           help="Output folder or URL of a run.")],
    customer: Annotated[str, typer.Option("--customer", metavar="ID", help="The customer id.")],
) -> None:
    """Explain a customer's segment, hash bucket and variants.

    Every variant assigned, and why.
    """
    console.print(str(adgen.explain(out_dir, customer)), highlight=False, markup=False)


@app.command()
def report(
    out_dir: Annotated[str, typer.Argument(metavar="OUT_DIR",
                                           help="Output folder or URL of a run.")],
    title: Annotated[
        str | None, typer.Option("--title", metavar="TEXT", help="Page title.")
    ] = None,
) -> None:
    """Write the HTML review sheet (review.html) of a run."""
    path = adgen.write_report(out_dir, title=title)
    console.print(f"[green]wrote[/green] {join(out_dir, path.name)}")


@app.command()
def review(
    target: Annotated[str, typer.Argument(
        metavar="OUT_DIR|CAMPAIGN", help="Output folder or URL of a run, or the campaign YAML.")],
    port: Annotated[int, typer.Option("--port", metavar="N", min=0, max=65535,
                                      help="Port to listen on (default 0: a free one).")] = 0,
    host: Annotated[str, typer.Option(
        "--host", metavar="ADDR",
        help="Address to listen on (default 127.0.0.1, this machine only; 0.0.0.0: every "
        "network).")] = "127.0.0.1",
    reviewer: Annotated[str, typer.Option(
        "--reviewer", metavar="NAME",
        help="Who decides (else the page asks); with --import, for rows that name nobody.")] = "",
    import_: Annotated[Path | None, typer.Option(
        "--import", metavar="CSV",
        help="Record the decisions of a CSV (variant_id, decision, reviewer, comment), then "
        "exit.")] = None,
    export: Annotated[Path | None, typer.Option(
        "--export", metavar="CSV", help="Write every variant's decision to a CSV, then exit.")
    ] = None,
) -> None:
    """Approve or reject each variant in a web page (or by CSV).

    Serves the review sheet on this machine, with a per-session address; exports then publish
    only approved variants (export.require_approval).
    """
    is_campaign = Path(target).suffix.lower() in {".yaml", ".yml"}
    out = adgen.load_campaign(Path(target)).output_location if is_campaign else target
    if import_ is not None or export is not None:
        if import_ is not None:
            made = adgen.import_decisions(out, import_, reviewer=reviewer)
            console.print(f"[green]recorded[/green] {len(made)} decisions from {import_}")
            _update_sheet(out, len(made))
        if export is not None:
            rows = adgen.export_decisions(out, export)
            console.print(f"[green]wrote[/green] {export}: {rows} variants")
        return

    def announce(url: str) -> None:
        console.print(f"review of {out}: open {url}", highlight=False, soft_wrap=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            err_console.print(f"[yellow]warning:[/yellow] listening on {host}: anyone who can "
                              "reach this machine and has the address can decide", highlight=False)
        console.print("stop with Ctrl+C", style="dim")
        sys.stdout.flush()

    _update_sheet(out, adgen.serve_review(out, host=host, port=port, reviewer=reviewer,
                                          announce=announce))


def _update_sheet(out: str, decided: int) -> None:
    """After new decisions: write review.html again, where the output has one."""
    if not decided or not open_store(out).exists(REPORT_NAME):
        return
    try:
        path = adgen.write_report(out)
    except adgen.AdgenError as exc:
        err_console.print(f"[yellow]warning:[/yellow] {REPORT_NAME} not updated ({exc}); run "
                          f"`adgen report {out}` to show the decisions in it", highlight=False)
        return
    console.print(f"updated {join(out, path.name)} with the decisions")


@app.command("export")
def export_(
    target: Annotated[Path, typer.Argument(metavar="CAMPAIGN|OUT_DIR",
                                          help="Campaign YAML, or the output folder of a run.")],
    to: Annotated[
        list[str] | None,
        typer.Option("--to", metavar="NAME",
                     help="meta, google, html5 or csv (repeatable; default: the campaign's "
                     "export.to)."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option("--url", metavar="URL", help="Landing page (overrides export.url).")
    ] = None,
    audience: AudienceOpt = None,
    set_: SetOpt = None,
) -> None:
    """Write upload files for ad platforms (every ad paused).

    Under OUT/exports/, OUT being the campaign's output folder.
    """
    is_campaign = target.suffix.lower() in {".yaml", ".yml"}
    spec = _load(target, set_) if is_campaign else None
    result = adgen.export(spec or target, to=to or None, url=url, audience=audience)
    for name, paths in result.files.items():
        console.print(f"[green]{name}[/green]: {len(paths)} files, "
                      f"{len(result.skipped[name])} ads left out")
        for entry in result.skipped[name]:
            where = f" {entry['placement']}" if entry.get("placement") else ""
            err_console.print(f"[yellow]left out[/yellow] {entry['variant_id']}{where}: "
                              f"{entry['reason']}", highlight=False)
        for warning in result.warnings[name]:
            err_console.print(f"[yellow]warning[/yellow] {warning}", highlight=False)
    console.print(f"wrote {result.out / 'exports'}")


@app.command("verify")
def verify_(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...",
                                                help="Pictures or videos to check.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="OUT_DIR",
                     help="Output folder of the run that made them (default: the output "
                     "folder a file sits in, if any): resolves each file to its variant."),
    ] = None,
    trust: Annotated[
        Path | None,
        typer.Option("--trust", metavar="PEM", help="C2PA trust anchors to accept (root "
                     "certificates, PEM)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Read back what files say about their making.

    The invisible watermark and its confidence, the IPTC source type, the C2PA manifest and
    its validation, and the variant each file resolves to. Exits 1 when a file claims nothing.
    """
    results = adgen.verify(files, out=out, trust=trust)
    if as_json:
        typer.echo(verify_json(results))
    else:
        for result in results:
            console.print(result.line(), highlight=False, markup=False, soft_wrap=True)
    if not all(result.claims for result in results):
        raise typer.Exit(1)


def _quiet_libraries() -> None:
    """Keep model libraries' chatter (progress bars, advice) off the terminal; the warnings
    that remain print as one line each."""
    for name in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
        os.environ.setdefault(name, "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.showwarning = _show_warning


def _show_warning(message: Warning | str, *_: object, **__: object) -> None:
    """A warning is one line, like an error (no source location, no code excerpt)."""
    err_console.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


USAGE_ERRORS: type[Any] = importlib.import_module(
    typer.BadParameter.__module__).ClickException
"""The class of click's errors as this typer raises them: typer 0.26 and later bring their own
copy of click (``typer._click``), older ones use click; ``typer.BadParameter`` lives beside it."""


def main() -> None:
    """Console entry point: runs the app, turning user errors into one line and exit code 2."""
    _quiet_libraries()
    try:
        code = app(standalone_mode=False)  # click returns typer.Exit's code in this mode
        if isinstance(code, int) and code:
            sys.exit(code)
    except adgen.AdgenError as exc:
        for line in str(exc).splitlines() or ["error"]:
            err_console.print(f"[red]error:[/red] {line}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted; run the same command again to continue")
        sys.exit(130)
    except USAGE_ERRORS as exc:
        exc.show()  # a UsageError prints the usage line and the error
        sys.exit(exc.exit_code)
