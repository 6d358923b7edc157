"""Shared fixtures: small campaigns written into a temp folder, the repo's example campaigns."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tiny test models run several times faster on one thread than on cores shared with other
# processes (torch reads this when first imported; subprocesses and Ray workers inherit it).
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]

AUDIENCE_CSV = """customer_id,first_name,region,tier,spend
c1,Ana,north,gold,10
c2,Ben,north,gold,30
c3,Chloé,south,silver,5
c4,Dmitri,south,gold,7
c5,Emeka,north,silver,1
c6,Fatima,east,gold,100
"""


def draw_logo(path: Path, *, color: tuple[int, int, int] = (20, 40, 160)) -> Path:
    """A simple logo with alpha: an opaque coloured rounded bar on transparency."""
    image = Image.new("RGBA", (240, 80), (0, 0, 0, 0))
    ImageDraw.Draw(image).rounded_rectangle((4, 4, 236, 76), radius=16, fill=(*color, 255))
    image.save(path)
    return path


def draw_product(path: Path) -> Path:
    image = Image.new("RGBA", (200, 260), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((40, 20, 160, 250), radius=30, fill=(200, 40, 40, 255))
    draw.rectangle((80, 0, 120, 30), fill=(30, 30, 30, 255))
    image.save(path)
    return path


def base_campaign(root: Path) -> dict[str, Any]:
    """Raw data of a small, valid campaign whose files live under ``root``."""
    (root / "audience.csv").write_text(AUDIENCE_CSV, encoding="utf-8")
    draw_logo(root / "logo.png")
    draw_product(root / "bottle.png")
    return {
        "name": "test-campaign",
        "audience": {"path": "audience.csv", "segment_by": ["region", "tier"],
                     "aggregates": {"avg_spend": "spend:mean"}},
        "brand": {"name": "Acme", "logo": "logo.png", "colors": ["#0B3D91", "#F2A900", "#FFFFFF"],
                  "products": {"bottle": "bottle.png"}},
        "creatives": [
            {"id": "hero", "prompt": "a bottle in the {{ region }}, {{ tier }} style",
             "product": "bottle",
             "captions": {"headline": "Hello {{ region | title }}", "cta": "Shop now"}},
        ],
        "variants": 2,
        "renderer": {"name": "offline", "width": 256, "height": 256},
        "placements": ["feed_square", "story", "300x250"],
        "output": "out",
        "experiment": {"seed": "exp-1"},
    }


def write_campaign(root: Path, data: dict[str, Any], name: str = "campaign.yaml") -> Path:
    path = root / name
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _files(folder: Path) -> set[tuple[str, int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {(str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="session", autouse=True)
def repo_out_untouched() -> Iterator[None]:
    """Tests write only to temporary folders: the repository's own out/ (where `make demo`
    writes) is the same after the session as before it, or the session fails."""
    out = REPO / "out"
    before = _files(out)
    yield
    changed = sorted(name for name, *_ in _files(out) - before)
    assert not changed, (f"tests wrote into {out} (use tmp_path): "
                         f"{', '.join(changed[:5])}{' …' if len(changed) > 5 else ''}")


@pytest.fixture
def campaign_data(tmp_path: Path) -> dict[str, Any]:
    return base_campaign(tmp_path)


@pytest.fixture
def campaign_file(tmp_path: Path, campaign_data: dict[str, Any]) -> Path:
    return write_campaign(tmp_path, campaign_data)


@pytest.fixture(scope="session")
def ray_pool() -> Iterator[Any]:
    """One local Ray cluster for the whole test run, with a simulated pool of 4 GPUs."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=4, num_gpus=4, include_dashboard=False, log_to_driver=False,
                 configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway ES256 root CA and signing certificate (EKU emailProtection), for tests."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn: str) -> Any:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "adgen tests")])

    def usage(*, sign: bool) -> Any:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False,
                             key_encipherment=False, data_encipherment=False,
                             key_agreement=False, key_cert_sign=not sign, crl_sign=not sign,
                             encipher_only=False, decipher_only=False)

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def builder(subject: str, public: Any) -> Any:
        return (x509.CertificateBuilder().subject_name(name(subject))
                .issuer_name(name("adgen test root")).public_key(public)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=7))
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))

    ca = (builder("adgen test root", ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(usage(sign=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (builder("adgen test signer", key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(sign=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("pki")
    pem = serialization.Encoding.PEM
    paths = {"chain": folder / "chain.pem", "key": folder / "key.pem", "root": folder / "root.pem"}
    paths["chain"].write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    paths["root"].write_bytes(ca.public_bytes(pem))
    paths["key"].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A PostgreSQL server for the session: the one .ci/run started (ADGEN_TEST_POSTGRES), else
    one started here from the installed PostgreSQL; skipped, with the reason, where none is
    installed. Its password is in ADGEN_TEST_PGPASSWORD, as a campaign would read it."""
    from tests import postgres as pg
    from tests.databases import password_in_environment

    shared = os.environ.get(pg.SERVER_ENV)
    if shared:
        server = pg.running(Path(shared))
        password_in_environment(server)
        yield server
        return
    try:
        server = pg.start()
    except FileNotFoundError as exc:
        pytest.skip(f"no PostgreSQL: {exc}")
    password_in_environment(server)
    try:
        yield server
    finally:
        pg.stop(server.folder)


@pytest.fixture(params=["duckdb", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Each SQL test twice: on DuckDB (a file) and on PostgreSQL (a schema of its own)."""
    from tests.databases import Database

    if request.param == "duckdb":
        yield Database.duckdb(tmp_path / "crm.duckdb")
        return
    with Database.postgres_schema(request.getfixturevalue("postgres")) as database:
        yield database


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs two workers) the tests of the session's Ray
    cluster run on one worker (one cluster, not one per worker), and first: the longest
    stretch starts while the other worker takes the rest."""
    def on_ray(item: pytest.Item) -> bool:
        return "ray_pool" in getattr(item, "fixturenames", ())

    for item in filter(on_ray, items):
        item.add_marker(pytest.mark.xdist_group("ray"))
    items.sort(key=lambda item: not on_ray(item))  # stable: each file keeps its order
