"""Nothing lost on object storage: the commit before any delete, one writer at a time across
machines, a store failing mid-run as one line, outputs that cannot be written found before any
render. Against moto's S3 server on 127.0.0.1, behind an endpoint that injects faults."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import adgen
from adgen.cli import app
from adgen.errors import OutputError, StoreError
from adgen.output.lease import hold_lease
from adgen.output.lock import output_lock
from adgen.output.mirror import open_output
from adgen.output.store import open_store
from tests.conftest import REPO, write_campaign
from tests.fakes import SeedRenderer
from tests.s3server import (
    FaultyEndpoint,
    client,
    make_bucket,
    object_names,
    restore_env,
    s3_server,
    set_env,
)
from tests.test_locales import catalog_campaign

PLACEMENTS = ["feed_square", "300x250"]
CREDENTIALS_FIX = ("access denied: check the credentials (AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                   "AWS_SECRET_ACCESS_KEY) and the bucket's permissions")


@dataclass
class S3:
    env: dict[str, str]
    """The server's own address (for checks with boto3, past the faulty endpoint)."""
    endpoint: FaultyEndpoint
    """What adgen talks to."""


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with s3_server() as direct:
        endpoint = FaultyEndpoint(direct["AWS_ENDPOINT_URL"])
        saved = set_env({**direct, "AWS_ENDPOINT_URL": endpoint.url})
        try:
            make_bucket(direct, "ads")
            yield S3(direct, endpoint)
        finally:
            restore_env(saved)
            endpoint.close()


@pytest.fixture(autouse=True)
def healthy(s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ADGEN_MIRROR_DIR", str(tmp_path / "mirrors"))
    yield
    s3.endpoint.fault = lambda method, path: None
    s3.endpoint.ignore = set()
    if s3.endpoint.dead:
        s3.endpoint.revive()


def _cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adgen", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=300, env={**os.environ, **(env or {})})


def _errors(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in done.stderr, done.stderr
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _data(campaign_data: dict[str, Any], output: str, **changes: Any) -> dict[str, Any]:
    return {**campaign_data, "output": output, "placements": PLACEMENTS, **changes}


def _campaign(campaign_data: dict[str, Any], root: Path, output: str,
              **changes: Any) -> adgen.CampaignSpec:
    return adgen.campaign_from_dict(_data(campaign_data, output, **changes), base_dir=root)


def _recaptioned(campaign_data: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**c, "captions": {**c["captions"], "headline": "Goodbye {{ region | title }}"}}
            for c in campaign_data["creatives"]]


def _committed(s3: S3, prefix: str) -> tuple[dict[str, bytes], pd.DataFrame]:
    """The objects under ``prefix`` and the manifest they commit."""
    objects = object_names(s3.env, "ads", prefix)
    return objects, pd.read_parquet(io.BytesIO(objects["manifest.parquet"]))


def _assets(objects: dict[str, bytes]) -> list[str]:
    return sorted(n for n in objects if n.startswith("assets/") and not n.endswith("/"))


def _assert_consistent(s3: S3, prefix: str) -> pd.DataFrame:
    """Every asset the committed manifest lists is there with its checksum, and no other."""
    objects, manifest = _committed(s3, prefix)
    ok = manifest[manifest["status"] == "ok"]
    assert _assets(objects) == sorted(ok["path"])
    for row in ok.itertuples():
        assert _sha(objects[row.path]) == row.sha256
    leases = [n for n in objects if n.startswith(".adgen-lock/") and not n.endswith("/")]
    assert leases == [] and ".adgen.lock" not in objects  # released; the local lock stays local
    return manifest


# -- 1. the commit comes first --------------------------------------------------------------


def test_a_failed_manifest_commit_deletes_nothing_and_a_rerun_completes(
    s3: S3, tmp_path: Path, campaign_data: dict[str, Any]
) -> None:
    url = "s3://ads/commit"
    first = adgen.run(_campaign(campaign_data, tmp_path, url))
    before, _ = _committed(s3, "commit")
    # new captions: every asset is new and the old ones are to go, but the manifest's PUT fails
    s3.endpoint.fault = lambda method, path: (
        500 if method in {"PUT", "POST"} and "/commit/manifest.parquet" in path else None)
    changed = _campaign(campaign_data, tmp_path, url, creatives=_recaptioned(campaign_data))
    with pytest.raises(StoreError) as failed:
        adgen.run(changed)
    message = str(failed.value)
    assert message.startswith(f"{url}/manifest.parquet: the store failed (") and "\n" not in message
    assert message.endswith("what was written is kept: run the same command again to finish")
    after, _ = _committed(s3, "commit")
    assert after["manifest.parquet"] == before["manifest.parquet"]  # the old commit stands...
    for row in first.manifest.itertuples():  # ...and every asset it names is there, intact
        assert _sha(after[row.path]) == row.sha256
    written = set(_assets(after)) - set(_assets(before))
    assert len(written) == len(first.manifest)  # the new assets were written, and kept
    # the store is back: the rerun reuses them all and prunes only after its commit
    s3.endpoint.fault = lambda method, path: None
    again = adgen.run(changed)
    assert again.rendered == 0 and again.assets_written == 0
    assert set(_assert_consistent(s3, "commit")["path"]) == written


# -- 2. one writer at a time, across machines -------------------------------------------------


class Meddling(SeedRenderer):
    """Renders as :class:`SeedRenderer`, after calling ``meddle`` once (another machine
    starting on the same output while this run holds it)."""

    def __init__(self, meddle: Any) -> None:
        super().__init__()
        self.meddle = meddle

    def __call__(self, jobs: Any) -> Any:
        if self.meddle is not None:
            self.meddle, meddle = None, self.meddle
            meddle()
        return super().__call__(jobs)


def test_a_second_machine_is_refused_naming_the_holder_and_nothing_is_lost(
    s3: S3, tmp_path: Path, campaign_data: dict[str, Any]
) -> None:
    url = "s3://ads/hosts"
    path = write_campaign(tmp_path, _data(campaign_data, url), "hosts.yaml")
    other_host = {"ADGEN_MIRROR_DIR": str(tmp_path / "host-b")}  # its own mirror and local lock
    second: list[subprocess.CompletedProcess[str]] = []
    result = adgen.run(adgen.load_campaign(path),
                       make_renderer=lambda: Meddling(
                           lambda: second.append(_cli("run", path, env=other_host))))
    assert second[0].returncode == 2
    assert _errors(second[0]) == [second[0].stderr.strip()]
    assert re.fullmatch(
        rf"error: {url}: the output is in use by `adgen run` on host "
        rf"{re.escape(socket.gethostname())}, PID {os.getpid()}, since 20\S+; wait for it to "
        r"finish, or retry with --wait SECONDS \(or ADGEN_LOCK_WAIT\)", second[0].stderr.strip())
    manifest = _assert_consistent(s3, "hosts")
    assert list(manifest["sha256"]) == list(result.manifest["sha256"])
    # the first run released the lease: the other machine runs now, and has nothing to redo
    third = _cli("run", path, env=other_host)
    assert third.returncode == 0, third.stderr
    assert "0 rendered" in third.stdout and "0 assets written" in third.stdout
    assert list(_assert_consistent(s3, "hosts")["sha256"]) == list(result.manifest["sha256"])


def _lease(s3: S3, prefix: str) -> dict[str, Any] | None:
    data = object_names(s3.env, "ads", prefix).get(".adgen-lock/lease.json")
    return None if data is None else dict(json.loads(data))


def _plant_lease(s3: S3, prefix: str, **record: Any) -> None:
    """A lease written by another machine (as its adgen would)."""
    holder = {"host": "elsewhere", "pid": 4242, "command": "run", "since": "2026-01-01T00:00:00",
              "ttl": 60, "machine": "elsewhere", "token": "theirs", **record}
    client(s3.env).put_object(Bucket="ads", Key=f"{prefix}/.adgen-lock/lease.json",
                              Body=json.dumps(holder).encode())


def test_a_live_lease_is_renewed_and_a_stale_one_taken_over(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "s3://ads/lease"
    monkeypatch.setenv("ADGEN_LOCK_TTL", "3")
    with hold_lease(url, "run", 0):
        first = _lease(s3, "lease")
        assert first is not None and first["pid"] == os.getpid() and first["ttl"] == 3
        time.sleep(4.5)  # past its time to live: only the heartbeat keeps it
        with (pytest.raises(OutputError, match=rf"^{url}: the output is in use by `adgen run` "
                            rf"on host {re.escape(socket.gethostname())}, PID {os.getpid()}"),
              hold_lease(url, "refresh", 0)):
            pass
        renewed = _lease(s3, "lease")
        assert renewed is not None and renewed["renewed"] > first["renewed"]
    assert _lease(s3, "lease") is None  # released
    # a machine that died holding it: refused while it may be alive, taken over once stale
    _plant_lease(s3, "lease", ttl=2)
    with (pytest.raises(OutputError, match="in use by `adgen run` on host elsewhere, PID 4242"),
          hold_lease(url, "run", 0)):
        pass
    with hold_lease(url, "run", 30):
        taken = _lease(s3, "lease")
        assert taken is not None and taken["pid"] == os.getpid()
    assert _lease(s3, "lease") is None


def test_a_command_whose_lease_was_taken_over_commits_nothing(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "s3://ads/lost"
    store = open_store(url)
    store.write_bytes("run.json", b"old")
    with (pytest.raises(OutputError) as lost,
          output_lock(url, "run"), open_output(url) as folder):
        (folder / "run.json").write_bytes(b"new")
        (folder / "manifest.parquet").write_bytes(b"new")
        _plant_lease(s3, "lost")  # another machine took over, as after this one stalled
    assert str(lost.value).startswith(
        f"{url}: this command lost the output's lock (it was taken over by `adgen run` on "
        "host elsewhere, PID 4242")
    assert str(lost.value).endswith("nothing was committed: run it again")
    assert store.read_bytes("run.json") == b"old" and not store.exists("manifest.parquet")
    lease = _lease(s3, "lost")
    assert lease is not None and lease["token"] == "theirs"  # the new holder's lease is kept


@pytest.mark.parametrize("header", ["If-None-Match", "If-Match"])
def test_a_server_that_ignores_conditional_writes_is_refused(s3: S3, header: str) -> None:
    s3.endpoint.ignore = {header.lower()}
    with (pytest.raises(OutputError, match=rf"^s3://ads/ignores: this S3 server ignores "
                        rf"conditional writes \({header}\), so adgen cannot keep a second "
                        "writer out"),
          hold_lease("s3://ads/ignores", "run", 0)):
        pass
    assert _lease(s3, "ignores") is None


def test_without_boto3_an_s3_output_says_what_to_install(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 fails
    with (pytest.raises(OutputError, match=r"^s3://ads/x: an s3:// output is locked with S3 "
                        r"conditional writes, which need boto3: pip install 'adgen\[s3\]'$"),
          hold_lease("s3://ads/x", "run", 0)):
        pass


def test_stores_without_conditional_writes_keep_a_second_writer_out_with_claims(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "memory://claims/out"
    store = open_store(url)
    with output_lock(url, "run"):
        monkeypatch.setenv("ADGEN_MIRROR_DIR", str(tmp_path / "host-b"))  # another machine
        with (pytest.raises(OutputError, match=rf"^{url}: the output is in use by `adgen run` on "
                            rf"host {re.escape(socket.gethostname())}, PID {os.getpid()}"),
              output_lock(url, "refresh")):
            pass
        assert len(store.files(".adgen-lock")) == 1  # the refused writer withdrew its claim
        monkeypatch.setenv("ADGEN_MIRROR_DIR", str(tmp_path / "mirrors"))
    assert store.files(".adgen-lock") == []
    # a claim left by a writer that died elsewhere is taken over once stale
    store.write_bytes(".adgen-lock/claim-dead.json", json.dumps(
        {"host": "elsewhere", "pid": 1, "command": "run", "ttl": 2, "machine": "elsewhere",
         "renewed": "2026-01-01T00:00:00+00:00"}).encode())
    with output_lock(url, "run"):
        (claim,) = store.files(".adgen-lock")
        assert json.loads(store.read_bytes(claim))["pid"] == os.getpid()


# -- 3. the store failing ---------------------------------------------------------------------


def test_the_store_dying_mid_run_is_one_line_exit_1_and_a_rerun_completes(
    s3: S3, tmp_path: Path, campaign_data: dict[str, Any]
) -> None:
    url = "s3://ads/outage"
    path = write_campaign(tmp_path, _data(campaign_data, url))
    started: set[str] = set()

    def die_at_the_third_asset(method: str, path: str) -> str | None:
        if method in {"PUT", "POST"} and "/outage/assets/" in path:
            started.add(path.split("?")[0])
        return "die" if len(started) == 3 else None

    s3.endpoint.fault = die_at_the_third_asset
    done = _cli("run", path)
    assert done.returncode == 1
    (error,) = _errors(done)
    assert re.fullmatch(rf"error: {url}/\S+: cannot reach the store \(check AWS_ENDPOINT_URL and "
                        r"the network\); what was written is kept: run the same command again "
                        r"to finish", error), error
    kept = object_names(s3.env, "ads", "outage")
    assert "manifest.parquet" not in kept and len(_assets(kept)) >= 1
    s3.endpoint.revive()
    s3.endpoint.fault = lambda method, path: None
    again = _cli("run", path)  # takes over the lease the dead run could not release
    assert again.returncode == 0, again.stderr
    assert f"-> {url}\n" in again.stdout  # the done line names the URL, not the mirror
    manifest = _assert_consistent(s3, "outage")
    assert (manifest["status"] == "ok").all() and len(manifest) == 20


def test_outputs_that_cannot_be_written_fail_before_any_render(
    s3: S3, tmp_path: Path, campaign_data: dict[str, Any]
) -> None:
    bucket = "s3://no-such-bucket/x"
    path = write_campaign(tmp_path, _data(campaign_data, bucket), "bucket.yaml")
    for command in ("validate", "plan", "run"):
        done = _cli(command, path)
        assert done.returncode == 2
        assert _errors(done) == [f"error: {bucket}: cannot write here: the bucket does not "
                                 "exist: create it, or fix the URL"] == [done.stderr.strip()]
    touched = {path for _, path in s3.endpoint.seen if path.startswith("/no-such-bucket/")}
    assert touched and all(p.startswith("/no-such-bucket/x/.adgen-lock/") for p in touched)
    # local folders: a file in the way, under the way, a read-only folder
    (tmp_path / "file").write_text("not a folder")
    read_only = tmp_path / "read-only"
    cases = {tmp_path / "file": "the output path is a file, not a folder; give a folder "
                                "(--out DIR or output: in the campaign)",
             tmp_path / "file" / "sub": f"cannot create the output folder, {tmp_path / 'file'} "
                                        "is a file; give another folder",
             read_only: "the output folder is not writable (",
             read_only / "new": f"cannot create the output folder, {read_only} is not writable"}
    with _read_only(read_only):
        for out, problem in cases.items():
            path = write_campaign(tmp_path, _data(campaign_data, str(out)), "local.yaml")
            done = _cli("validate", path)
            assert done.returncode == 2, (out, done.stderr)
            assert _errors(done) == [done.stderr.strip()]
            assert done.stderr.strip().startswith(f"error: {out}: {problem}"), done.stderr
            for command in (adgen.plan, adgen.run):  # the same error, before any work
                with pytest.raises(OutputError, match=f"^{re.escape(f'{out}: {problem}')}"):
                    command(adgen.load_campaign(path))
        assert list(read_only.iterdir()) == []
    assert (tmp_path / "file").read_text() == "not a folder"



@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """A folder nobody can write, root included (immutable), for the block."""
    folder.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
    elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot make a read-only folder here (chattr +i failed)")
    try:
        yield
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_wrong_credentials_fail_before_any_render(
    tmp_path: Path, campaign_data: dict[str, Any]
) -> None:
    # a server that checks keys after its first 4 requests: its start-up check, then 3 here
    with s3_server(INITIAL_NO_AUTH_ACTION_COUNT="4") as env:
        iam = client(env, "iam")
        iam.create_user(UserName="adgen")
        iam.put_user_policy(UserName="adgen", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="adgen")["AccessKey"]
        good = {**env, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        make_bucket(good, "ads")
        url = "s3://ads/creds"
        path = write_campaign(tmp_path, _data(campaign_data, url))
        for wrong in ({"AWS_SECRET_ACCESS_KEY": "wrong"}, {"AWS_ACCESS_KEY_ID": "AKIANOBODY"}):
            for command in ("validate", "plan", "run"):
                done = _cli(command, path, env={**good, **wrong})
                assert done.returncode == 2
                assert _errors(done) == [f"error: {url}: cannot write here: {CREDENTIALS_FIX}"]
        assert object_names(good, "ads") == {}
        assert _cli("validate", path, env=good).returncode == 0


# -- the rest: explain, what the CLI prints, what goes into the bucket ------------------------


def test_explain_reads_a_url_and_says_what_is_wrong(
    s3: S3, tmp_path: Path, campaign_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "s3://ads/explain"
    result = adgen.run(_campaign(campaign_data, tmp_path, url))
    monkeypatch.setenv("ADGEN_MIRROR_DIR", str(tmp_path / "host-b"))  # another machine
    chosen = result.assignments.iloc[0]
    explanation = adgen.explain(url, chosen["customer_id"])
    assert explanation.variant_id == chosen["variant_id"]
    assert explanation.status.startswith("live (2 assets)")
    runner = CliRunner()
    shown = runner.invoke(app, ["explain", url, "--customer", chosen["customer_id"]])
    assert shown.exit_code == 0 and shown.output.startswith(f"customer '{chosen['customer_id']}'")
    with pytest.raises(adgen.AudienceError) as unknown:
        adgen.explain(url, "x" * 100_000)
    assert str(unknown.value) == (
        f"{url}: customer {'x' * 80!r}… (100,000 characters) has never been assigned (not in "
        "the assignment ledger); check the id (ids are text: leading zeros count)")
    with pytest.raises(OutputError, match=r"^s3://ads/nothing: no assignments here \(no "
                       r"refresh.json, no ledger/\): give the output folder or URL of a run$"):
        adgen.explain("s3://ads/nothing", "c1")
    with pytest.raises(OutputError, match=rf"^{tmp_path / 'missing'}: no such folder; give the "
                       "output folder of a run$"):
        adgen.explain(tmp_path / "missing", "c1")
    yaml_file = write_campaign(tmp_path, campaign_data)
    with pytest.raises(OutputError, match=rf"^{yaml_file} is a campaign file; explain reads a "
                       r"run's output: give its output folder"):
        adgen.explain(yaml_file, "c1")


def test_an_s3_run_keeps_this_machines_caches_and_names_the_url(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "s3://ads/catalog"
    data = {**catalog_campaign(tmp_path), "output": url}
    campaign = adgen.load_campaign(write_campaign(tmp_path, data))
    first = adgen.run(campaign)
    cutouts = sorted((campaign.output_dir / ".cache" / "catalog").rglob("*.png"))
    made = {path: path.stat().st_mtime_ns for path in cutouts}
    assert len(made) == 2  # red and blue lamps, cut out on this machine
    again = adgen.run(campaign)  # the pull leaves the mirror's caches alone: nothing made again
    assert {path: path.stat().st_mtime_ns for path in cutouts} == made
    assert list(again.manifest["sha256"]) == list(first.manifest["sha256"])
    objects = object_names(s3.env, "ads", "catalog")
    assert not [n for n in objects if n.startswith((".cache/catalog", ".adgen.lock"))]
    assert len([n for n in objects if n.startswith("thumbs/")]) == 3  # the run's review sheet
    report = CliRunner().invoke(app, ["report", url])
    assert report.exit_code == 0 and report.output.strip() == f"wrote {url}/review.html"


def test_a_missing_ledger_part_of_an_s3_output_is_named_by_its_url(
    s3: S3, tmp_path: Path, campaign_data: dict[str, Any]
) -> None:
    url = "s3://ads/ledger"
    first = adgen.run(_campaign(campaign_data, tmp_path, url))
    client(s3.env).delete_object(Bucket="ads", Key="ledger/ledger/part-000001.parquet")
    with pytest.raises(OutputError) as missing:
        adgen.run(_campaign(campaign_data, tmp_path, url))
    assert str(missing.value).startswith(
        f"{url}/ledger/part-000001.parquet: missing, but refresh.json counts 1 ledger parts; "
        "restore it from a backup (or the bucket's object versions), or start the assignments "
        "over with --reset-ledger")
    again = adgen.run(_campaign(campaign_data, tmp_path, url), reset_ledger=True)
    assert list(again.assignments["variant_id"]) == list(first.assignments["variant_id"])
    assert "ledger/part-000001.parquet" in object_names(s3.env, "ads", "ledger")


def test_explain_reads_a_read_only_folder(tmp_path: Path, campaign_data: dict[str, Any]) -> None:
    out = tmp_path / "archived"
    result = adgen.run(_campaign(campaign_data, tmp_path, str(out)))
    customer = result.assignments.iloc[0]
    with _read_only(out):
        assert adgen.explain(out, customer["customer_id"]).variant_id == customer["variant_id"]
