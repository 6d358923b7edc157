"""Post-processing on the cluster: assets made next to the renders, written from there, and
identical to the local backend's; a lost post worker retried; a real multi-node cluster."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import adgen
from adgen.assets import JobResults, PostContext, asset_units, brand_style, post_context
from adgen.backends.local import AssetMaker, render_local
from adgen.backends.ray import PoolOptions, render_ray
from adgen.jobs import Rendered
from adgen.output.cache import RenderCache
from tests.conftest import REPO, base_campaign
from tests.fakes import SeedRenderer
from tests.s3server import make_bucket, object_names, s3_server

pytestmark = pytest.mark.usefixtures("ray_pool")


def test_cluster_post_matches_local_byte_for_byte(tmp_path: Path, campaign_file: Path) -> None:
    local = adgen.run(adgen.load_campaign(campaign_file, overrides=[f"output={tmp_path / 'l'}"]))
    cluster = adgen.run(adgen.load_campaign(campaign_file, overrides=[
        f"output={tmp_path / 'c'}", "backend.name=ray", "backend.post=cluster"]))
    driver = adgen.run(adgen.load_campaign(campaign_file, overrides=[
        f"output={tmp_path / 'd'}", "backend.name=ray", "backend.post=driver"]))
    assert len(local.manifest) == 30
    for other in (cluster, driver):
        assert list(other.manifest["path"]) == list(local.manifest["path"])
        assert list(other.manifest["sha256"]) == list(local.manifest["sha256"])
        assert list(other.manifest["checks"]) == list(local.manifest["checks"])
        assert other.assets_written == 30
    for row in cluster.manifest.itertuples():
        assert (cluster.out / row.path).read_bytes() == (local.out / row.path).read_bytes()


def test_processes_make_the_same_assets_as_threads(tmp_path: Path) -> None:
    plan, ctx = _plan_and_context(tmp_path)
    render_local(SeedRenderer, plan.to_render, ctx.cache)
    made = {}
    for processes in (False, True):
        for name in ctx.assets.files("assets"):
            ctx.assets.delete(name)
        with AssetMaker(plan, ctx, None, workers=2, processes=processes) as maker:
            for key in asset_units(plan):
                maker.submit(key)
            made[processes] = maker.results()
        assert maker.written == 10
    assert [r["sha256"] for r in made[True]] == [r["sha256"] for r in made[False]]
    assert sorted(r["path"] for r in made[True]) == ctx.assets.files("assets")


@dataclass(frozen=True)
class DyingPost(PostContext):
    """Kills its worker process once (while making a render's assets), as a lost node would."""

    marker: str = ""

    def job_rows(self, rows: list[dict[str, Any]]) -> JobResults:
        if self.marker and os.path.exists(self.marker):
            os.unlink(self.marker)
            os._exit(1)
        return super().job_rows(rows)


def _plan_and_context(root: Path) -> tuple[adgen.Plan, PostContext]:
    campaign = adgen.campaign_from_dict({**base_campaign(root), "placements": ["300x250"],
                                         "report": False}, base_dir=root)
    plan = adgen.plan(campaign)
    return plan, post_context(plan, RenderCache.of(campaign.output_location), brand_style(campaign))


def test_a_lost_post_worker_is_retried_and_nothing_is_written_twice(tmp_path: Path) -> None:
    plan, ctx = _plan_and_context(tmp_path)
    marker = tmp_path / "die-once"
    marker.touch()
    dying = DyingPost(**{f: getattr(ctx, f) for f in ctx.__dataclass_fields__},
                      marker=str(marker))
    made: dict[str, JobResults] = {}
    rendered: list[str] = []

    def on_assets(key: str, results: JobResults) -> None:
        assert key not in made  # each render's assets arrive once
        made[key] = results

    report = render_ray(SeedRenderer, plan.to_render, ctx.cache, batch_size=2,
                        on_rendered=lambda r: rendered.append(r.job_key), post=dying,
                        post_rows=asset_units(plan), on_assets=on_assets,
                        options=PoolOptions(post_queue=2))
    assert not marker.exists()  # a post worker did die
    assert sorted(rendered) == sorted(job.key for job in plan.to_render)
    assert set(made) == {job.key for job in plan.to_render}
    rows = [row for results in made.values() for row, _ in results]
    assert len(rows) == len(plan.variants) == 10
    assert sorted(ctx.assets.files("assets")) == sorted(row["path"] for row in rows)
    assert sum(report.post_nodes.values()) == 10


@dataclass(frozen=True)
class SlowPost(PostContext):
    """Post-processing that falls behind the renders."""

    def job_rows(self, rows: list[dict[str, Any]]) -> JobResults:
        time.sleep(0.3)
        return super().job_rows(rows)


def test_post_queue_bounds_the_batches_in_memory(tmp_path: Path) -> None:
    plan, ctx = _plan_and_context(tmp_path)
    slow = SlowPost(**{f: getattr(ctx, f) for f in ctx.__dataclass_fields__})
    made: list[str] = []
    report = render_ray(SeedRenderer, plan.to_render, ctx.cache, batch_size=1, post=slow,
                        post_rows=asset_units(plan), on_assets=lambda key, _: made.append(key),
                        options=PoolOptions(post_queue=1, in_flight=1))
    assert sorted(made) == sorted(job.key for job in plan.to_render)  # none lost, none twice
    # 10 fast renders, slow post: at most 4 rendering (one per GPU) + 1 waiting, never all 10
    assert report.peak_batches <= 4 * 1 + 1


@dataclass(frozen=True)
class SlowFirstPost(PostContext):
    """Post-processing that takes its time over one render's assets."""

    slow_key: str = ""

    def job_rows(self, rows: list[dict[str, Any]]) -> JobResults:
        if rows and rows[0]["render_key"] == self.slow_key:
            time.sleep(2.0)
        return super().job_rows(rows)


def test_a_render_held_back_is_made_once_its_batch_is_cached(tmp_path: Path) -> None:
    """The quality gate may hold a render back (a possible twin) and release it with a later
    batch, while the post task caching its own batch is still running: its assets are made
    once that task is done, from the cache, exactly once."""
    plan, ctx = _plan_and_context(tmp_path)
    first, slow, *rest = [job.key for job in plan.to_render]
    held = SlowFirstPost(**{f: getattr(ctx, f) for f in ctx.__dataclass_fields__},
                         slow_key=slow)
    last = rest[-1]

    def ready(result: Rendered) -> list[str]:  # ``first`` waits for the last render
        return [] if result.job_key == first else [result.job_key, first] if (
            result.job_key == last) else [result.job_key]

    made: dict[str, JobResults] = {}

    def on_assets(key: str, results: JobResults) -> None:
        assert key not in made  # each render's assets arrive once
        made[key] = results

    render_ray(SeedRenderer, plan.to_render, ctx.cache, batch_size=2, post=held,
               post_rows=asset_units(plan), on_assets=on_assets, ready=ready)
    assert set(made) == {job.key for job in plan.to_render}
    rows = [row for results in made.values() for row, _ in results]
    assert all(row["status"] == "ok" for row in rows) and len(rows) == 10
    assert sorted(ctx.assets.files("assets")) == sorted(row["path"] for row in rows)


def test_multi_node_cluster_writes_assets_from_worker_nodes_to_s3(tmp_path: Path) -> None:
    """A head node with no CPU for work and two worker nodes (one simulated GPU each), each
    with its own temp folder; the output is an S3 bucket. Runs in a subprocess (a driver
    joins one cluster)."""
    local_root = tmp_path / "local"
    local_root.mkdir()
    local = adgen.run(adgen.campaign_from_dict(
        {**base_campaign(local_root), "report": False}, base_dir=local_root))
    nodes = [tmp_path / f"node{i}" for i in range(3)]
    for node in nodes:
        node.mkdir()
    with s3_server() as env:
        make_bucket(env, "shared")
        script = textwrap.dedent(f"""
            import json, sys
            from pathlib import Path
            sys.path.insert(0, {str(REPO)!r})
            from ray.cluster_utils import Cluster
            import ray
            import adgen
            from tests.conftest import base_campaign
            env = {env!r}
            nodes = {[str(n) for n in nodes]!r}
            cluster = Cluster(initialize_head=True, head_node_args={{
                "num_cpus": 0, "num_gpus": 0, "env_vars": {{**env, "TMPDIR": nodes[0]}}}})
            for folder in nodes[1:]:
                cluster.add_node(num_cpus=1, num_gpus=1, env_vars={{**env, "TMPDIR": folder}})
            ray.init(address=cluster.address, runtime_env={{"env_vars": {{
                "PYTHONPATH": {str(REPO)!r}}}}}, include_dashboard=False, log_to_driver=False)
            cluster.wait_for_nodes()
            root = Path({str(tmp_path / "campaign")!r}); root.mkdir()
            data = base_campaign(root)
            data["renderer"]["options"] = {{"batch_size": 1}}
            data.update(report=False, output="s3://shared/spring",
                        backend={{"name": "ray", "address": cluster.address}})
            result = adgen.run(adgen.campaign_from_dict(data, base_dir=root))
            manifest = result.manifest
            print(json.dumps({{"rendered": result.rendered, "sha256": list(manifest["sha256"]),
                               "paths": list(manifest["path"])}}))
            ray.shutdown(); cluster.shutdown()
        """)
        run_env = {**os.environ, **env, "ADGEN_MIRROR_DIR": str(tmp_path / "mirror"),
                   "PYTHONPATH": str(REPO)}
        run_env.pop("RAY_ADDRESS", None)
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=420, cwd=REPO, env=run_env)
        assert out.returncode == 0, out.stderr[-3000:]
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        objects = object_names(env, "shared", "spring")
    assert summary["rendered"] == 20  # 10 variants × 2 aspect classes (square, story)
    assert summary["sha256"] == list(local.manifest["sha256"])
    assert summary["paths"] == list(local.manifest["path"])
    for path, sha in zip(summary["paths"], summary["sha256"], strict=True):
        assert hashlib.sha256(objects[path]).hexdigest() == sha
    # the assets were made on the worker nodes: each wrote the brand files it was shipped
    # into its own temp folder; the head node (and the driver's disk) made none
    made_on = [n for n in nodes[1:] if list((n / "adgen" / "brand").glob("*logo.png"))]
    assert made_on == nodes[1:]
    assert not (nodes[0] / "adgen" / "brand").exists()
