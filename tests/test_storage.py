"""Outputs in object storage, against a real S3-compatible server (moto) on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import adgen
from adgen.cli import app
from adgen.errors import CampaignError
from adgen.output.mirror import open_output
from adgen.output.store import LocalStore, ObjectStore, open_store
from tests.s3server import make_bucket, object_names, restore_env, s3_server, set_env


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    with s3_server() as env:
        saved = set_env(env)
        try:
            make_bucket(env, "ads")
            yield env
        finally:
            restore_env(saved)


@pytest.fixture(autouse=True)
def mirrors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADGEN_MIRROR_DIR", str(tmp_path / "mirrors"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_store_round_trip_listing_and_hostile_names(
    where: str, s3: dict[str, str], tmp_path: Path
) -> None:
    """Both stores keep one contract: what is written reads back, listings are relative and
    sorted, names that leave the output are refused."""
    store = open_store(tmp_path / "out" if where == "folder" else "s3://ads/unit")
    assert isinstance(store, LocalStore if where == "folder" else ObjectStore)
    assert store.write_once("assets/a/x.png", b"one") is True
    assert store.write_once("assets/a/x.png", b"two") is False  # written once, kept
    store.write_bytes("run.json", b"{}")
    assert store.read_bytes("assets/a/x.png") == b"one"
    assert store.files() == ["assets/a/x.png", "run.json"]
    assert store.files("assets") == ["assets/a/x.png"]
    with pytest.raises(FileNotFoundError):
        store.read_bytes("missing.json")
    for hostile in ("../escape", "/etc/passwd", "a/../../b", "a\\b", ""):
        with pytest.raises(ValueError, match="not a relative path"):
            store.write_bytes(hostile, b"x")
    store.delete("run.json")
    assert not store.exists("run.json")


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_both_stores_prune_old_assets_and_lend_local_copies(
    where: str, s3: dict[str, str], tmp_path: Path
) -> None:
    """A folder prunes only the assets adgen recorded writing (others may keep files there); an
    object store's ``assets/`` prefix is adgen's alone. A local copy is the file or a copy."""
    store = open_store(tmp_path / "out" if where == "folder" else "s3://ads/prune")
    for name in ("assets/v1/a.png", "assets/v2/b.png", "assets/v3/foreign.png"):
        store.write_bytes(name, name.encode())
    assert store.prune_assets({"assets/v1/a.png", "assets/v2/b.png"}) == (
        [] if where == "folder" else ["assets/v3/foreign.png"])
    assert store.prune_assets({"assets/v1/a.png"}) == ["assets/v2/b.png"]
    left = ["assets/v1/a.png"] + (["assets/v3/foreign.png"] if where == "folder" else [])
    assert store.files("assets") == left
    with store.local_copy("assets/v1/a.png") as local:
        assert local.read_bytes() == b"assets/v1/a.png"
    with store.local_copy("assets/v9/missing.png") as local:
        assert not local.exists()


def test_unknown_scheme_is_a_clear_error() -> None:
    with pytest.raises(CampaignError, match="cannot open this location"):
        open_store("nosuchscheme://bucket/x")


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names every object store writes, in order."""
    written: list[str] = []
    original = ObjectStore.write_bytes

    def record(self: ObjectStore, rel: str, data: bytes) -> None:
        written.append(rel)
        original(self, rel, data)

    monkeypatch.setattr(ObjectStore, "write_bytes", record)
    return written


def test_mirror_pushes_changes_and_the_manifest_last(
    s3: dict[str, str], writes: list[str]
) -> None:
    store = open_store("s3://ads/mirror")
    store.write_bytes("keep.txt", b"same")
    store.write_bytes("gone.txt", b"old")
    store.write_bytes("assets/v/a.png", b"pixels")
    writes.clear()
    with open_output("s3://ads/mirror") as folder:
        assert sorted(p.name for p in folder.iterdir()) == ["gone.txt", "keep.txt"]  # no assets
        (folder / "manifest.parquet").write_bytes(b"m")
        (folder / "manifest.csv").write_bytes(b"m")
        (folder / "run.json").write_bytes(b"{}")
        (folder / "gone.txt").unlink()
        with open_output("s3://ads/mirror") as inner:  # nested: same mirror, no early push
            assert inner == folder
            assert writes == []
    assert writes[-2:] == ["manifest.csv", "manifest.parquet"] and "keep.txt" not in writes
    assert store.files() == ["assets/v/a.png", "keep.txt", "manifest.csv", "manifest.parquet",
                             "run.json"]
    writes.clear()
    with pytest.raises(RuntimeError), open_output("s3://ads/mirror") as folder:
        (folder / "manifest.parquet").write_bytes(b"half")
        raise RuntimeError("the run failed")
    assert writes == [] and store.read_bytes("manifest.parquet") == b"m"  # nothing committed


def _campaign(campaign_data: dict[str, Any], root: Path, output: str) -> adgen.CampaignSpec:
    data = {**campaign_data, "output": output, "placements": ["feed_square", "300x250"]}
    return adgen.campaign_from_dict(data, base_dir=root)


def test_run_to_s3_matches_the_local_run_and_reruns_write_nothing(
    s3: dict[str, str], tmp_path: Path, campaign_data: dict[str, Any], writes: list[str],
) -> None:
    local = adgen.run(_campaign(campaign_data, tmp_path, str(tmp_path / "local")))
    remote = adgen.run(_campaign(campaign_data, tmp_path, "s3://ads/spring"))
    objects = object_names(s3, "ads", "spring")
    # every asset is in the bucket, byte-identical to the local backend's
    assert list(remote.manifest["sha256"]) == list(local.manifest["sha256"])
    for row in remote.manifest.itertuples():
        assert _sha(objects[row.path]) == row.sha256
    manifest = pd.read_parquet(io.BytesIO(objects["manifest.parquet"]))
    assert list(manifest["path"]) == list(local.manifest["path"])
    assert {"assignments.csv", "run.json", "review.html", "manifest.csv"} <= set(objects)
    assert any(name.startswith(".cache/renders/") for name in objects)
    with Image.open(io.BytesIO(objects[remote.manifest["path"][0]])) as image:
        assert image.size == (1080, 1080)
    # the driver's disk holds no asset: only the mirror of the small files
    assert not list((tmp_path / "mirrors").rglob("*.png"))
    # a rerun renders nothing and writes no asset again
    writes.clear()
    again = adgen.run(_campaign(campaign_data, tmp_path, "s3://ads/spring"))
    assert again.rendered == 0 and again.assets_written == 0
    assert not [name for name in writes if name.startswith(("assets/", ".cache/"))]
    assert set(writes) <= {"run.json", "review.html", "manifest.csv", "manifest.parquet"}
    if "manifest.parquet" in writes:
        assert writes[-1] == "manifest.parquet"


def test_report_analyze_refresh_on_an_s3_output(
    s3: dict[str, str], tmp_path: Path, campaign_data: dict[str, Any]
) -> None:
    campaign = _campaign({**campaign_data, "report": False}, tmp_path, "s3://ads/loop")
    result = adgen.run(campaign)
    runner = CliRunner()
    out = runner.invoke(app, ["report", "s3://ads/loop"])
    assert out.exit_code == 0, out.output
    objects = object_names(s3, "ads", "loop")
    thumbs = [name for name in objects if name.startswith("thumbs/")]
    assert len(thumbs) == len(result.manifest)
    assert b"<html" in objects["review.html"].lower()
    variants = result.manifest.drop_duplicates("variant_id")
    rates = {"v0": 0.08, "v1": 0.03}
    results = pd.DataFrame({"variant_id": variants["variant_id"], "users": 5000,
                            "conversions": [int(5000 * rates[v.rsplit("-", 1)[-1]])
                                            for v in variants["variant_id"]]})
    results_path = tmp_path / "results.csv"
    results.to_csv(results_path, index=False)
    out = runner.invoke(app, ["analyze", "s3://ads/loop", "--results", str(results_path)])
    assert out.exit_code == 0, out.output
    assert "s3://ads/loop/analysis.csv" in out.output
    objects = object_names(s3, "ads", "loop")
    assert {"analysis.csv", "analysis.json", "analysis.png"} <= set(objects)
    outcome = adgen.refresh(campaign, results_path)
    assert outcome.retired and outcome.run.rendered == len(outcome.retired)
    objects = object_names(s3, "ads", "loop")
    assert {"refresh.json", "refresh_log.jsonl"} <= set(objects)
    manifest = pd.read_parquet(io.BytesIO(objects["manifest.parquet"]))
    for path in manifest["path"]:
        assert path in objects  # every listed asset exists
    assert not set(manifest["variant_id"]) & set(outcome.retired)
    files = [n for n in objects if not n.endswith("/")]  # not the empty "folder" markers
    stale = [n for n in files if n.startswith("assets/") and n not in set(manifest["path"])]
    assert stale == []  # the retired variants' files were pruned from the bucket
