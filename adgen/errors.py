"""adgen's exceptions, drawn in one place.

Every mistake a user can make raises a subclass of :class:`AdgenError` whose message names the
file, row or column, what is wrong and how to fix it. The CLI prints that message on one line
and exits with :attr:`AdgenError.exit_code` (2; 1 for a store outage). Anything else that
escapes is a bug in adgen and keeps its traceback.

    AdgenError
    ├── CampaignError      the campaign file or spec is invalid (fields, paths, placements)
    ├── AudienceError      the audience data is unreadable or inconsistent (rows, columns, ids)
    ├── TemplateError      a prompt or caption template is invalid or uses a missing variable
    ├── AssetError         a brand asset (logo, font, product image) is missing or corrupt
    ├── CatalogError       a product feed is unreadable, or a product image cannot be fetched
    ├── PostProcessError   a caption cannot fit, a file cannot meet its byte budget, ...
    ├── RenderError        a renderer cannot load its model or produced an unusable image
    ├── FFmpegError        ffmpeg is missing or failed (with ffmpeg's last lines)
    ├── OutputError        the output cannot be used: in use by another run, not a folder,
    │   │                  not writable, a missing bucket, damaged state
    │   └── StoreError     the object store failed during a command (exit code 1)
    ├── ResultsError       an experiment results file is invalid
    └── ReviewError        a review decision, or a decisions file, is invalid
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

    exit_code = 2
    """The CLI's exit code for it."""


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
    """The output cannot be used: another command holds its lock, the path is a file, it is
    not writable (a read-only folder, a missing bucket, wrong credentials), or its saved state
    is damaged (a ledger part is missing)."""


class StoreError(OutputError):
    """The object store failed in the middle of a command (an outage, a 5xx, a full quota).
    What was written is kept and nothing half-done is committed: the same command again
    finishes the work. Not a user mistake, so the CLI exits with code 1."""

    exit_code = 1

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}; what was written is kept: run the same command "
                         "again to finish")
        self.where, self.reason = where, reason

    def __reduce__(self) -> tuple[type[StoreError], tuple[str, str]]:
        return (StoreError, (self.where, self.reason))


class ResultsError(AdgenError):
    """An experiment results file is invalid."""


class ReviewError(AdgenError):
    """A review decision is invalid (an unknown variant, a decision other than approved,
    rejected or pending, no reviewer), or a decisions file cannot be read."""
