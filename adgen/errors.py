"""adgen's exceptions, drawn in one place.

Every mistake a user can make raises a subclass of :class:`AdgenError` whose message names the
file, row or column, what is wrong and how to fix it. The CLI prints that message on one line
and exits with code 2. Anything else that escapes is a bug in adgen and keeps its traceback.

    AdgenError
    ├── CampaignError      the campaign file or spec is invalid (fields, paths, placements)
    ├── AudienceError      the audience data is unreadable or inconsistent (rows, columns, ids)
    ├── TemplateError      a prompt or caption template is invalid or uses a missing variable
    ├── AssetError         a brand asset (logo, font, product image) is missing or corrupt
    ├── CatalogError       a product feed is unreadable, or a product image cannot be fetched
    ├── PostProcessError   a caption cannot fit, a file cannot meet its byte budget, ...
    ├── RenderError        a renderer cannot load its model or produced an unusable image
    ├── FFmpegError        ffmpeg is missing or failed (with ffmpeg's last lines)
    ├── OutputError        the output folder is in use by another run, or is not a folder
    └── ResultsError       an experiment results file is invalid
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_LISTED = 20
"""Error messages list at most this many names (columns, lines, assets), then how many more."""


def listed(items: Iterable[object], limit: int = MAX_LISTED, sep: str = ", ") -> str:
    """``items`` joined, at most ``limit`` of them, then ``and N more``."""
    shown = [str(item) for item in items]
    head = sep.join(shown[:limit])
    return head + (f"{sep}and {len(shown) - limit} more" if len(shown) > limit else "")


class AdgenError(Exception):
    """Base class of every error caused by user input. Its message is meant for the user."""


class CampaignError(AdgenError):
    """The campaign YAML or spec is invalid."""


class AudienceError(AdgenError):
    """The audience data cannot be read or is inconsistent."""


class TemplateError(AdgenError):
    """A prompt or caption template is invalid, unsafe or uses a variable that does not exist."""


class AssetError(AdgenError):
    """A brand asset (logo, font, product image) is missing, unreadable or unsuitable."""


class CatalogError(AdgenError):
    """A product catalog (feed) is unreadable, or a product image cannot be fetched or used."""


class PostProcessError(AdgenError):
    """Post-processing cannot honour the spec (caption does not fit, byte budget not met, ...)."""


class RenderError(AdgenError):
    """A renderer cannot load its model or cannot produce a usable image."""


class FFmpegError(AdgenError):
    """ffmpeg is missing or failed; the message carries ffmpeg's last lines."""


class OutputError(AdgenError):
    """The output folder cannot be used: another run holds its lock, or the path is a file."""


class ResultsError(AdgenError):
    """An experiment results file is invalid."""
