"""Renderers and backends by name: what the rest of adgen knows of each without importing it."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

import adgen
from adgen.backends import get_backend
from adgen.backends.local import LocalBackend
from adgen.backends.ray import RayBackend
from adgen.errors import CampaignError
from adgen.preflight import known_options
from adgen.renderers import (
    MODEL_RENDERERS,
    REGISTRY,
    RENDERERS,
    STAGED_RENDERERS,
    VIDEO_RENDERERS,
    create_renderer,
    renderer_class,
)
from tests.conftest import base_campaign


def test_the_registry_says_what_each_renderer_is() -> None:
    assert RENDERERS == ("offline", "diffusers", "diffusers-video")
    assert sorted(VIDEO_RENDERERS) == ["diffusers-video"]
    assert sorted(MODEL_RENDERERS) == ["diffusers", "diffusers-video"]
    assert sorted(STAGED_RENDERERS) == ["offline"]
    for name in REGISTRY:
        assert renderer_class(name).name == name  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["diffusers", "diffusers-video"])
def test_a_diffusion_renderer_s_options_are_its_keywords_but_sources(name: str) -> None:
    cls = renderer_class(name)
    keywords = {p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.kind is p.KEYWORD_ONLY}
    assert "sources" in keywords
    assert known_options(name) == keywords - {"sources"}


def test_the_offline_renderer_takes_its_own_options_and_the_runtime_ones() -> None:
    known = known_options("offline")
    assert {"palette", "staging", "shadow", "grain", "stage", "device", "dtype",
            "batch_size", "compile"} <= known
    assert "sources" not in known


def test_an_unknown_renderer_names_the_known_ones() -> None:
    with pytest.raises(CampaignError, match=r"^unknown renderer 'dalle': use one of offline, "
                                            r"diffusers, diffusers-video$"):
        create_renderer("dalle")


def test_sources_is_no_campaign_option(tmp_path: Path) -> None:
    """adgen passes the reader; a campaign naming it is told it is unknown, before rendering."""
    data = base_campaign(tmp_path)
    data["renderer"]["options"] = {"sources": "x"}
    with pytest.raises(CampaignError, match=r"unknown option\(s\) sources for renderer "
                                            r"'offline'"):
        adgen.validate(adgen.campaign_from_dict(data, base_dir=tmp_path))


@pytest.mark.parametrize(("backend", "kind", "posts"), [
    ({"name": "local"}, LocalBackend, False),
    ({"name": "ray"}, RayBackend, True),
    ({"name": "ray", "post": "driver"}, RayBackend, False),
])
def test_the_backend_is_chosen_by_name(tmp_path: Path, backend: dict[str, Any], kind: type,
                                       posts: bool) -> None:
    data = base_campaign(tmp_path)
    data["backend"] = backend
    data["renderer"]["options"] = {"batch_size": 3}
    chosen = get_backend(adgen.campaign_from_dict(data, base_dir=tmp_path))
    assert isinstance(chosen, kind)
    assert chosen.posts_where_it_renders is posts
    assert isinstance(chosen, LocalBackend | RayBackend) and chosen.batch_size == 3
