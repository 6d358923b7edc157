"""``adgen review``, the server, as a user starts it (the console script on a free port):
who may write, two reviewers at once, a killed server, the output's lock, an S3 output.
The browser test is tests/browser/test_review_app_browser.py."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import adgen
from adgen.errors import ReviewError
from adgen.output.lock import output_lock
from adgen.review.app import listen
from adgen.review.decisions import LOG_FILE, STATE_FILE, Decisions, reviewable
from adgen.review.sheet import write_report
from adgen.review.source import current_manifest
from tests.browser.sample_output import make_output
from tests.review_helpers import Server, cards, review_server
from tests.s3server import make_bucket, object_names, restore_env, s3_server, set_env


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Server]]:
    out = make_output(tmp_path_factory.mktemp("review"), video=False, analysis=False)
    with review_server(out, "--reviewer", "Ana", env={"ADGEN_LOCK_WAIT": "0.5"}) as server:
        yield out, server


def _first(server: Server) -> tuple[str, str]:
    variant, card = next(iter(cards(server.page()).items()))
    return variant, card["content"]


def _log(out: Path) -> list[dict[str, Any]]:
    path = out / LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_page_lists_every_variant_with_its_decision(served: tuple[Path, Server]) -> None:
    out, server = served
    page = server.page("?reviewer=Zo%C3%AB")
    assert set(cards(page)) == set(reviewable(current_manifest(out)))
    assert 'id="reviewer" type="text" maxlength="80" autocomplete="name" placeholder="Your ' \
        'name" value="Zoë"' in page
    assert server.url.endswith("/?reviewer=Ana")
    hostile = server.page("?reviewer=%22%3E%3Cscript%3Ealert(1)%3C/script%3E")
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in hostile
    assert "<script>alert(1)" not in hostile
    for figure in ("thumbs/", "assets/"):
        assert f'src="{figure}' in page or f'href="{figure}' in page
    # every picture the page shows is served, and nothing else of the folder
    for src in {m for m in page.split('"') if m.startswith(("thumbs/", "assets/"))}:
        status, body = server.request("GET", server.base + src)
        assert status == 200 and len(body) > 100, src
    for path in ("manifest.csv", "assignments.csv", "thumbs/../manifest.csv",
                 "assets/../../etc/passwd", LOG_FILE, ".adgen.lock"):
        assert server.request("GET", server.base + path)[0] == 404, path


def test_without_the_token_or_from_another_origin_nothing_changes(
        served: tuple[Path, Server]) -> None:
    out, server = served
    variant, content = _first(server)
    before = _log(out)
    vote = {"reviewer": "Mallory", "decisions": [
        {"variant_id": variant, "decision": "approved", "content": content, "comment": ""}]}
    port = server.host.rsplit(":", 1)[1]
    refused = [
        ("POST", "/decisions", {"Origin": f"http://{server.host}"}),  # no token
        ("POST", "/wrong-token/decisions", {"Origin": f"http://{server.host}"}),
        ("POST", server.base[:-2] + "x/decisions", {"Origin": f"http://{server.host}"}),
        ("POST", server.base + "decisions", {}),  # no Origin
        ("POST", server.base + "decisions", {"Origin": "http://evil.example"}),
        ("POST", server.base + "decisions", {"Origin": "null"}),
        ("POST", server.base + "decisions", {"Origin": f"http://{server.host}",
                                             "Sec-Fetch-Site": "cross-site"}),
        # DNS rebinding: the right origin, but a name this server does not answer to
        ("POST", server.base + "decisions", {"Origin": f"http://evil.example:{port}",
                                             "Host": f"evil.example:{port}"}),
        ("GET", "/", {}), ("GET", server.base.rstrip("/") + "x/", {}),
    ]
    for method, path, headers in refused:
        status, body = server.request(method, path, vote if method == "POST" else None,
                                      headers)
        assert status == 403, (method, path, headers, body)
        assert body.startswith(b"forbidden: ")
    # a form post from another page (text/plain: no preflight) is refused too
    status, _ = server.request("POST", server.base + "decisions", json.dumps(vote).encode(),
                               {"Origin": "http://evil.example", "Content-Type": "text/plain"})
    assert status == 403
    assert _log(out) == before
    # the page itself may write
    status, body = server.decide("Ana", vote["decisions"])
    assert status == 200 and body["saved"] == 1 and body["states"][variant]["state"] == "approved"
    assert _log(out)[-1]["reviewer"] == "Ana"
    # the same page loaded without the trailing slash is redirected, token kept
    status, _ = server.request("GET", server.base.rstrip("/"))
    assert status == 308


def test_a_decision_on_changed_content_or_while_a_run_holds_the_output_is_refused(
        served: tuple[Path, Server]) -> None:
    out, server = served
    variant, content = _first(server)
    before = _log(out)
    stale = [{"variant_id": variant, "decision": "rejected", "content": "0" * 32,
              "comment": ""}]
    status, body = server.decide("Ana", stale)
    assert status == 409 and "changed since this page was loaded" in body["error"]
    unknown = [{"variant_id": "nope", "decision": "rejected", "content": content}]
    status, body = server.decide("Ana", unknown)
    assert status == 400 and "variant 'nope' is not in the output" in body["error"]
    status, body = server.decide(" ", [{**unknown[0], "variant_id": variant}])
    assert status == 400 and body["error"].startswith("no reviewer: name yourself")
    with output_lock(out, "run"):  # a run writes the output: the write waits, then refuses
        status, body = server.decide("Ana", [{"variant_id": variant, "decision": "rejected",
                                              "content": content, "comment": ""}])
    assert status == 503 and "in use by `adgen run`" in body["error"]
    assert body["error"].endswith("your decision was not saved, try again")
    assert _log(out) == before


def test_two_reviewers_at_once_both_land_and_the_last_wins(
        served: tuple[Path, Server]) -> None:
    out, server = served
    variant, content = _first(server)
    start = len(_log(out))
    people = [f"reviewer {i}" for i in range(6)]
    barrier = threading.Barrier(len(people))
    answers: list[int] = []

    def decide(name: str, verdict: str) -> None:
        barrier.wait()
        status, _ = server.decide(name, [{"variant_id": variant, "decision": verdict,
                                          "content": content, "comment": f"from {name}"}])
        answers.append(status)

    threads = [threading.Thread(target=decide, args=(name, ("approved", "rejected")[i % 2]))
               for i, name in enumerate(people)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * len(people)
    log = _log(out)[start:]
    assert sorted(e["reviewer"] for e in log) == people  # every decision is in the log
    last = log[-1]  # the last written is the one that holds
    state = json.loads((out / STATE_FILE).read_text())["variants"][variant]
    assert (state["reviewer"], state["decision"]) == (last["reviewer"], last["decision"])
    shown = cards(server.page())[variant]["decision"]
    assert shown == last["decision"]


def test_a_killed_server_loses_no_decision_it_acknowledged(tmp_path: Path) -> None:
    out = make_output(tmp_path, video=False, analysis=False)
    acknowledged: list[str] = []
    with review_server(out) as server:
        variants = cards(server.page())
        stop = threading.Event()

        def keep_deciding() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                decisions = [{"variant_id": v, "decision": ("approved", "rejected")[n % 2],
                              "content": card["content"], "comment": f"round {n}"}
                             for v, card in variants.items()]
                try:
                    status, _ = server.decide("Ana", decisions)
                except OSError:  # the server is gone
                    return
                if status == 200:
                    acknowledged.append(f"round {n}")

        worker = threading.Thread(target=keep_deciding)
        worker.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(server.process.pid, signal.SIGKILL)  # mid-stream, without warning
        server.process.wait(timeout=30)
        stop.set()
        worker.join(timeout=60)
    assert len(acknowledged) >= 5
    decisions = Decisions.of(out)  # the log reads whole: no torn line
    logged = {e.comment for e in decisions.events}
    assert set(acknowledged) <= logged
    assert len(decisions) % len(variants) == 0  # each batch whole or not at all
    # the server starts again on the same folder and shows what was acknowledged
    write_report(out)
    with review_server(out) as again:
        page = cards(again.page())
        assert {v: card["decision"] for v, card in page.items()} == {
            v: decisions.latest[v].decision for v in page}
        variant = next(iter(page))
        status, _ = again.decide("Ben", [{"variant_id": variant, "decision": "pending",
                                          "content": page[variant]["content"]}])
        assert status == 200
    # stopped (Ctrl+C, or here SIGTERM), it writes the static sheet again with the decisions
    assert again.process.returncode == 0
    sheet = cards((out / "review.html").read_text())
    assert sheet[variant]["decision"] == "pending"
    assert {sheet[v]["decision"] for v in page if v != variant} == {
        decisions.latest[v].decision for v in page if v != variant}


def test_decisions_on_an_s3_output(tmp_path: Path, campaign_data: dict[str, Any],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADGEN_MIRROR_DIR", str(tmp_path / "mirrors"))
    with s3_server() as env:
        saved = set_env(env)
        try:
            make_bucket(env, "ads")
            _s3_round(tmp_path, campaign_data, env)
        finally:
            restore_env(saved)


def _s3_round(tmp_path: Path, campaign_data: dict[str, Any], env: dict[str, str]) -> None:
    url = "s3://ads/spring"
    data = {**campaign_data, "output": url, "placements": ["feed_square"], "review": {},
            "renderer": {**campaign_data["renderer"], "aspect": "crop"}}
    campaign = adgen.campaign_from_dict(data, base_dir=tmp_path)
    first = adgen.run(campaign)
    variants = list(dict.fromkeys(first.manifest["variant_id"]))
    # the page and a decision, served from the bucket
    with review_server(url, env=env) as server:
        page = cards(server.page())
        assert set(page) == set(variants)
        card = page[variants[0]]
        status, body = server.decide("Ana", [{"variant_id": variants[0], "decision": "rejected",
                                              "content": card["content"],
                                              "comment": "warmer"}])
        assert status == 200, body
    objects = object_names(env, "ads", "spring")
    assert json.loads(objects[LOG_FILE])["decision"] == "rejected"
    assert json.loads(objects[STATE_FILE])["variants"][variants[0]]["comment"] == "warmer"
    assert ".adgen-lock/lease.json" not in objects  # the write's lease is given back
    # import and export by CSV, on the URL
    (tmp_path / "in.csv").write_text(f"variant_id,decision,reviewer,comment\n"
                                     f"{variants[1]},approved,Ben,\n")
    assert len(adgen.import_decisions(url, tmp_path / "in.csv")) == 1
    assert adgen.export_decisions(url, tmp_path / "out.csv") == len(variants)
    # the next run on the URL renders the rejected one again; its log entry is committed
    second = adgen.run(campaign)
    seeds = first.manifest.drop_duplicates("variant_id").set_index("variant_id")["seed"]
    again = second.manifest.drop_duplicates("variant_id").set_index("variant_id")["seed"]
    assert again[variants[0]] != seeds[variants[0]]
    assert (again.drop(variants[0]) == seeds.drop(variants[0])).all()
    log = [json.loads(line) for line in
           object_names(env, "ads", "spring")[LOG_FILE].decode().splitlines()]
    assert [(e["variant_id"], e["decision"], e["source"]) for e in log] == [
        (variants[0], "rejected", "app"), (variants[1], "approved", "import"),
        (variants[0], "pending", "run")]
    assert second.summary()["approved"] == 1 and second.summary()["pending"] == len(variants) - 1


def test_a_port_in_use_or_an_unknown_host_is_a_clear_error() -> None:
    taken = listen("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(ReviewError, match=rf"cannot listen on 127.0.0.1 port {port} \("):
            listen("127.0.0.1", port)
    finally:
        taken.close()
    with pytest.raises(ReviewError, match=r"--host 'no such host\.invalid': not an address"):
        listen("no such host.invalid", 0)
