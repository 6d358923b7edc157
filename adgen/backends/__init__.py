"""Backends by name: where render jobs run (:mod:`adgen.backends.base` has the interface).

``local`` renders in this process (:mod:`~adgen.backends.local`); ``ray`` on a pool of actors
of a Ray cluster (:mod:`~adgen.backends.ray`, the only module that imports Ray).
"""

from __future__ import annotations

from adgen.backends.base import Backend
from adgen.backends.local import LocalBackend
from adgen.backends.ray import RayBackend
from adgen.spec import CampaignSpec

BACKENDS: dict[str, type[LocalBackend] | type[RayBackend]] = {
    "local": LocalBackend, "ray": RayBackend}


def get_backend(campaign: CampaignSpec) -> Backend:
    """The campaign's backend (``backend.name``), set up from its backend and renderer
    settings."""
    return BACKENDS[campaign.backend.name].from_campaign(campaign)


__all__ = ["BACKENDS", "Backend", "get_backend"]
