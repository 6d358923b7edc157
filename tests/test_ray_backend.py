"""The Ray backend on a simulated 4-GPU pool (one local cluster for the whole test run)."""

from __future__ import annotations

import errno
import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import adgen
from adgen.backends.local import render_local
from adgen.backends.ray import render_ray
from adgen.jobs import Rendered, RenderJob
from adgen.output.cache import RenderCache
from tests.conftest import REPO
from tests.fakes import RecordingRenderer, SeedRenderer, batches_ran

pytestmark = pytest.mark.usefixtures("ray_pool")


def jobs(count: int) -> list[RenderJob]:
    return [RenderJob("seed", None, f"prompt {i}", "", i, 64, 64, 1, 0.0) for i in range(count)]


def test_every_job_once_on_distinct_gpus_and_equal_to_local(tmp_path: Path) -> None:
    work = jobs(24)
    seen: list[Rendered] = []
    cache = RenderCache(tmp_path / "ray")
    cached_when_reported: list[bool] = []

    def reported(result: Rendered) -> None:  # the driver's threads wrote it before
        seen.append(result)
        cached_when_reported.append(cache.get(result.job_key) is not None)

    report = render_ray(SeedRenderer, work, cache, batch_size=2, on_rendered=reported)
    assert sorted(r.job_key for r in seen) == sorted(j.key for j in work)
    assert cached_when_reported == [True] * 24
    assert len(report.workers) == 4
    gpu_ids = [tuple(w.gpu_ids) for w in report.workers.values()]
    assert len(set(gpu_ids)) == 4 and all(len(ids) == 1 for ids in gpu_ids)
    assert sum(w.images for w in report.workers.values()) == 24
    render_local(SeedRenderer, work, RenderCache(tmp_path / "local"), batch_size=2)
    for job in work:
        ray_png = next((tmp_path / "ray" / "renders").rglob(f"{job.key}.png")).read_bytes()
        local_png = next((tmp_path / "local" / "renders").rglob(f"{job.key}.png")).read_bytes()
        assert ray_png == local_png


class FullDisk(RenderCache):
    """A cache whose disk fills up after ``room`` renders."""

    def __init__(self, root: Path, room: int) -> None:
        super().__init__(root)
        self.room = room

    def put_encoded(self, key: str, png: bytes, info: dict[str, Any]) -> None:
        self.room -= 1
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().put_encoded(key, png, info)


def test_a_full_disk_on_the_driver_stops_the_pool_and_keeps_what_was_reported(
    tmp_path: Path
) -> None:
    cache = FullDisk(tmp_path / "c", room=6)
    seen: list[Rendered] = []
    with pytest.raises(OSError, match="No space left on device"):
        render_ray(SeedRenderer, jobs(24), cache, batch_size=2, on_rendered=seen.append)
    assert 0 < len(seen) <= 6  # nothing is reported that is not in the cache
    assert all(RenderCache(tmp_path / "c").get(r.job_key) is not None for r in seen)


def test_a_dead_actor_is_replaced_and_its_jobs_retried(tmp_path: Path) -> None:
    marker = tmp_path / "die-once"
    marker.touch()
    work = jobs(16)
    seen: list[Rendered] = []
    factory = functools.partial(SeedRenderer, sleep=0.05, die_marker=str(marker))
    report = render_ray(factory, work, RenderCache(tmp_path / "c"), batch_size=2,
                        on_rendered=seen.append)
    assert report.replaced >= 1
    assert sorted(r.job_key for r in seen) == sorted(j.key for j in work)  # none lost, none twice
    assert all(r.error is None for r in seen)


def test_failed_jobs_are_reported_and_the_rest_is_written(campaign_file: Path) -> None:
    campaign = adgen.load_campaign(campaign_file, overrides=["backend.name=ray"])
    result = adgen.run(campaign, make_renderer=functools.partial(SeedRenderer,
                                                                 fail_prompt="south"))
    failed_variants = result.plan.variants[result.plan.variants["prompt"].str.contains("south")]
    assert len(result.failed) == 2 * failed_variants["job_key"].nunique() == 8  # 2 shapes
    ok = result.manifest[result.manifest["status"] == "ok"]
    assert len(ok) == (10 - 4) * 3 and len(result.failures) == 4 * 3
    assert set(result.failures["variant_id"]) == set(failed_variants["variant_id"])
    for path in ok["path"]:
        assert (result.out / path).is_file()
    # each failed variant is one row, no file, with why (every seed the quality gate tried)
    lost = result.manifest[result.manifest["status"] != "ok"]
    assert set(lost["variant_id"]) == set(failed_variants["variant_id"])
    assert (lost["path"] == "").all() and lost["status"].str.contains("NaN image").all()
    again = adgen.run(campaign, make_renderer=SeedRenderer)
    assert again.rendered == 8 and len(again.manifest) == 30


def test_ray_run_matches_local_run_byte_for_byte(tmp_path: Path, campaign_file: Path) -> None:
    local = adgen.run(adgen.load_campaign(campaign_file, overrides=[f"output={tmp_path / 'l'}"]))
    ray_run = adgen.run(adgen.load_campaign(
        campaign_file, overrides=[f"output={tmp_path / 'r'}", "backend.name=ray"]))
    assert list(local.manifest["sha256"]) == list(ray_run.manifest["sha256"])


def test_a_bad_renderer_option_on_ray_is_a_clear_error_before_any_actor(
    campaign_file: Path
) -> None:
    campaign = adgen.load_campaign(campaign_file, overrides=["backend.name=ray",
                                                             "renderer.options.bogus=1"])
    with pytest.raises(adgen.CampaignError, match=r"renderer.options: unknown option\(s\) bogus "
                       "for renderer 'offline'"):
        adgen.run(campaign)


def test_multi_node_cluster(tmp_path: Path) -> None:
    """Two nodes with two simulated GPUs each (in a subprocess: a driver joins one cluster)."""
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(REPO)!r})
        from ray.cluster_utils import Cluster
        import ray
        from adgen.backends.ray import render_ray
        from adgen.output.cache import RenderCache
        from adgen.jobs import RenderJob
        from tests.fakes import RecordingRenderer, SeedRenderer, batches_ran
        cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1, "num_gpus": 2}})
        cluster.add_node(num_cpus=1, num_gpus=2)
        env = {{"env_vars": {{"PYTHONPATH": {str(REPO)!r}}}}}
        ray.init(address=cluster.address, runtime_env=env)
        cluster.wait_for_nodes()
        jobs = [RenderJob("seed", None, f"p{{i}}", "", i, 64, 64, 1, 0.0) for i in range(16)]
        done = []
        cache = RenderCache(Path({str(tmp_path)!r}))
        report = render_ray(SeedRenderer, jobs, cache, batch_size=1, on_rendered=done.append)
        nodes = {{w.node for w in report.workers.values()}}
        print(len(done), len(report.workers), len(nodes))
        ray.shutdown(); cluster.shutdown()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=240, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-3:] == ["16", "4", "2"]


def test_ctrl_c_frees_the_pool_and_a_rerun_continues_from_the_cache(tmp_path: Path) -> None:
    import time

    import ray

    work = jobs(16)
    cache = RenderCache(tmp_path / "c")
    seen: list[Rendered] = []

    def interrupt_after_four(result: Rendered) -> None:
        seen.append(result)
        if len(seen) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render_ray(functools.partial(SeedRenderer, sleep=0.05), work, cache, batch_size=1,
                   on_rendered=interrupt_after_four)
    deadline = time.monotonic() + 20
    while ray.available_resources().get("GPU", 0) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("GPU", 0) == 4  # every actor was stopped
    done = {job.key for job in work if cache.has(job.key)}
    assert len(done) >= 4
    rest = [job for job in work if job.key not in done]
    again: list[Rendered] = []
    render_ray(SeedRenderer, rest, cache, batch_size=2, on_rendered=again.append)
    assert len(again) == len(rest) and all(cache.has(job.key) for job in work)


# --- the pipeline really dispatches to Ray, with the campaign's pool options ------------------


def _run_recorded(campaign_file: Path, log: Path, *overrides: str, **kwargs: object
                  ) -> tuple[adgen.RunResult, list[dict]]:
    campaign = adgen.load_campaign(campaign_file, overrides=["renderer.options.batch_size=1",
                                                             *overrides])
    result = adgen.run(campaign, make_renderer=functools.partial(RecordingRenderer, str(log)),
                       **kwargs)  # type: ignore[arg-type]
    return result, batches_ran(log)


def test_backend_ray_renders_in_ray_actors_not_in_the_driver(
    tmp_path: Path, campaign_file: Path
) -> None:
    result, ran = _run_recorded(campaign_file, tmp_path / "log", "backend.name=ray")
    assert sorted(key for batch in ran for key in batch["jobs"]) == sorted(result.plan.jobs)
    assert {batch["pid"] for batch in ran}.isdisjoint({os.getpid()})
    assert all(batch["actor"] for batch in ran)  # each batch ran inside a Ray actor
    assert len(result.manifest) == 30 and not result.failed
    local, ran_locally = _run_recorded(campaign_file, tmp_path / "local",
                                       f"output={tmp_path / 'local-out'}")
    assert {batch["pid"] for batch in ran_locally} == {os.getpid()}
    assert list(local.manifest["sha256"]) == list(result.manifest["sha256"])


def test_gpus_caps_the_pool(tmp_path: Path, campaign_file: Path) -> None:
    _, ran = _run_recorded(campaign_file, tmp_path / "log", "backend.name=ray", gpus=2)
    actors = {batch["actor"]: tuple(batch["gpus"]) for batch in ran}
    assert len(actors) == 2  # 10 batches, 4 GPUs in the cluster, at most 2 used
    assert len(set(actors.values())) == 2 and all(len(g) == 1 for g in actors.values())


def test_gpus_per_worker_packs_actors_on_one_gpu(tmp_path: Path, campaign_file: Path) -> None:
    _, ran = _run_recorded(campaign_file, tmp_path / "log", "backend.name=ray", "backend.gpus=1",
                           "backend.gpus_per_worker=0.5")
    actors = {batch["actor"]: tuple(batch["gpus"]) for batch in ran}
    assert len(actors) == 2  # two half-GPU actors...
    assert len(set(actors.values())) == 1  # ...sharing one GPU
    assert len(set(ran[0]["gpus"])) == 1


def test_cli_ray_address_and_cpu_workers_on_a_cluster_without_gpus(
    tmp_path: Path, campaign_file: Path
) -> None:
    """`adgen run --backend ray --ray-address ADDR --gpus 2` joins that cluster (no GPUs there,
    so ``cpu_workers`` CPU actors render, with a warning), in a subprocess with its own
    cluster."""
    log = tmp_path / "log"
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(REPO)!r})
        from ray.cluster_utils import Cluster
        import ray
        import adgen.pipeline
        from adgen import cli
        from tests.fakes import batches_ran, recording_renderer
        from pathlib import Path
        cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 3, "num_gpus": 0}})
        address = cluster.address
        adgen.pipeline.create_renderer = recording_renderer
        sys.argv = ["adgen", "run", {str(campaign_file)!r}, "--backend", "ray",
                    "--ray-address", address, "--gpus", "2", "--set", "backend.cpu_workers=2",
                    "--set", "renderer.options.batch_size=1"]
        try:
            cli.main()
        finally:
            ray.shutdown(); cluster.shutdown()
        print(json.dumps({{"address": address, "ran": batches_ran(Path({str(log)!r}))}}))
    """)
    env = {**os.environ, "ADGEN_TEST_RENDER_LOG": str(log), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    ran = report["ran"]
    assert {batch["gcs"] for batch in ran} == {report["address"]}  # that cluster, not a new one
    assert len({batch["actor"] for batch in ran}) == 2  # cpu_workers=2 (the default would be 1)
    assert all(batch["gpus"] == [] for batch in ran)
    assert sum(len(batch["jobs"]) for batch in ran) == 20  # 10 variants x 2 aspect classes
    assert [line for line in out.stderr.splitlines() if "warning" in line] == [
        f"warning: --gpus 2 (backend.gpus) asks for GPUs, but the Ray cluster at "
        f"{report['address']} has none: rendering on CPU workers instead (backend.cpu_workers "
        "sets how many)"]
    manifest = pd.read_csv(campaign_file.parent / "out" / "manifest.csv")
    assert len(manifest) == 30


def test_each_worker_bar_ends_at_its_share_of_the_jobs(tmp_path: Path, campaign_file: Path
                                                        ) -> None:
    bars: dict[str, tuple[int, int]] = {}
    _run_recorded(campaign_file, tmp_path / "log", "backend.name=ray",
                  progress=lambda stage, done, total: bars.__setitem__(stage, (done, total)))
    workers = {stage: bar for stage, bar in bars.items() if stage.startswith("gpu ")}
    assert len(workers) >= 2 and all(done == total for done, total in workers.values())
    assert sum(done for done, _ in workers.values()) == 20 == bars["render"][0]
    assert bars["render"] == (20, 20) and bars["post"] == (30, 30)


def _no_gpus_in_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    resources = {k: v for k, v in ray.cluster_resources().items() if k != "GPU"}
    monkeypatch.setattr(ray, "cluster_resources", lambda: resources)


def test_gpus_on_a_cluster_without_gpus_warns_once_and_renders_on_cpu_workers(
    tmp_path: Path, campaign_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_gpus_in_the_cluster(monkeypatch)
    with pytest.warns(RuntimeWarning) as caught:
        result, ran = _run_recorded(campaign_file, tmp_path / "log", "backend.name=ray",
                                    "backend.cpu_workers=2", gpus=2)
    assert [str(w.message) for w in caught] == [
        "--gpus 2 (backend.gpus) asks for GPUs, but the Ray cluster has none: rendering on "
        "CPU workers instead (backend.cpu_workers sets how many)"]
    assert all(batch["gpus"] == [] for batch in ran) and len(result.manifest) == 30


def test_gpus_on_a_cluster_without_gpus_is_an_error_for_a_diffusion_model(
    campaign_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_gpus_in_the_cluster(monkeypatch)
    campaign = adgen.load_campaign(campaign_file, overrides=[
        "backend.name=ray", "backend.gpus=1", "renderer.name=diffusers", "quality.enabled=false"])
    with pytest.raises(adgen.CampaignError, match=r"^--gpus 1 \(backend.gpus\) asks for GPUs, "
                       r"but the Ray cluster has none: the diffusion model would run on CPU "
                       r"workers, many times slower; add GPU nodes, or leave --gpus out"):
        adgen.run(campaign, make_renderer=SeedRenderer)
