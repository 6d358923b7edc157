"""ffmpeg plumbing: finding the binary, running it safely, probing what it wrote.

ffmpeg is the static binary that ``imageio-ffmpeg`` ships (``IMAGEIO_FFMPEG_EXE`` overrides
it). Commands are built with ffmpeg-python and run from an argument list, never through a
shell; files are passed as ``file:`` URLs of absolute paths, so no file name is read as an
option or a protocol (``pipe:``, ``concat:``...). No text from customer data ever becomes part of
a command: captions are drawn with Pillow (:mod:`adgen.post.video`). Every failure raises
:class:`~adgen.errors.FFmpegError` with ffmpeg's last lines.

The binary has no ``ffprobe``: :func:`probe_video` reads the stream header that ``ffmpeg -i``
prints, counts frames by copying the video stream to the null muxer, and reads the MP4's
top-level boxes to tell whether ``moov`` comes before ``mdat`` (fast start).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from adgen.errors import FFmpegError

__all__ = ["FramePipe", "MediaInfo", "VideoInfo", "ffmpeg_exe", "file_url", "is_faststart",
           "mp4_boxes", "probe_media", "probe_video", "run_ffmpeg"]

INSTALL_HINT = (
    "install it with `pip install imageio-ffmpeg` (it ships a static ffmpeg), or set "
    "IMAGEIO_FFMPEG_EXE to the path of an ffmpeg binary"
)
QUIET = ("-hide_banner", "-nostdin", "-loglevel", "error")
_TAIL_LINES = 12


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, as ffmpeg reads it (``duration`` is the container's)."""

    width: int
    height: int
    fps: float
    duration: float
    frames: int
    codec: str
    pix_fmt: str
    has_audio: bool
    faststart: bool
    profile: str = ""
    audio_codec: str | None = None


@dataclass(frozen=True)
class MediaInfo:
    """The streams of any media file: duration (None when unknown) and stream headers."""

    duration: float | None
    video: str | None
    audio: str | None


def ffmpeg_exe() -> str:
    """The ffmpeg binary to run: ``IMAGEIO_FFMPEG_EXE`` when set, else imageio-ffmpeg's own.
    Raises :class:`FFmpegError` saying how to install it when there is none."""
    try:
        import imageio_ffmpeg
    except ImportError:
        override = os.environ.get("IMAGEIO_FFMPEG_EXE")
        if not override:
            raise FFmpegError(f"ffmpeg is not available: {INSTALL_HINT}") from None
        exe = override
    else:
        try:
            exe = imageio_ffmpeg.get_ffmpeg_exe()
        except RuntimeError:
            raise FFmpegError(f"no ffmpeg binary was found: {INSTALL_HINT}") from None
    found = shutil.which(exe)
    if found is None:
        source = ("IMAGEIO_FFMPEG_EXE" if os.environ.get("IMAGEIO_FFMPEG_EXE")
                  else "imageio-ffmpeg")
        raise FFmpegError(
            f"the ffmpeg binary {exe!r} (from {source}) does not exist or is not executable: "
            f"{INSTALL_HINT}"
        )
    return found


def file_url(path: Path | str) -> str:
    """``path`` as a ``file:`` URL of its absolute path (never read as an option or protocol)."""
    return "file:" + str(Path(path).resolve())


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    kept = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return "\n".join(kept[-lines:]) if kept else "(ffmpeg printed nothing)"


def _failure(what: str, code: int, stderr: str) -> FFmpegError:
    return FFmpegError(f"ffmpeg failed (exit code {code}) while {what}; its last lines:\n"
                       f"{_tail(stderr)}")


def run_ffmpeg(args: Sequence[str], *, what: str) -> str:
    """Run ``ffmpeg args`` (the binary is prepended) and return what it printed on stderr.
    ``what`` ("probing 'a.mp4'") names the task in the :class:`FFmpegError` raised on failure."""
    exe = ffmpeg_exe()
    try:
        done = subprocess.run([exe, *args], stdin=subprocess.DEVNULL, capture_output=True,
                              check=False)
    except OSError as exc:
        raise FFmpegError(f"cannot start ffmpeg {exe!r} ({exc}): {INSTALL_HINT}") from None
    stderr = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0:
        raise _failure(what, done.returncode, stderr)
    return stderr


class FramePipe:
    """An ffmpeg process fed raw frames on its stdin.

    ``args`` is the command without the binary, reading ``pipe:``. Use as a context manager:
    ``write`` each frame's bytes; leaving the block closes stdin and waits, raising
    :class:`FFmpegError` with ffmpeg's last lines if it failed (also when it died early and
    the pipe broke). stderr goes to a temporary file, so a chatty ffmpeg never blocks us."""

    def __init__(self, args: Sequence[str], *, what: str) -> None:
        self.args = [ffmpeg_exe(), *args]
        self.what = what
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._broken = False

    def __enter__(self) -> FramePipe:
        self._log = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(self.args, stdin=subprocess.PIPE,
                                             stdout=subprocess.DEVNULL, stderr=self._log)
        except OSError as exc:
            self._log.close()
            raise FFmpegError(f"cannot start ffmpeg {self.args[0]!r} ({exc}): "
                              f"{INSTALL_HINT}") from None
        return self

    def write(self, frame: bytes | memoryview) -> None:
        """Send one frame; after ffmpeg has died this does nothing (the error comes on exit)."""
        assert self._process is not None and self._process.stdin is not None
        if self._broken:
            return
        try:
            self._process.stdin.write(frame)
        except (BrokenPipeError, ConnectionResetError):
            self._broken = True

    def write_all(self, frames: Iterable[bytes | memoryview]) -> None:
        for frame in frames:
            self.write(frame)
            if self._broken:
                break

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        process, log = self._process, self._log
        assert process is not None and process.stdin is not None and log is not None
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                process.stdin.close()
            if kind is not None:  # our own error while making frames: stop ffmpeg
                process.kill()
            code = process.wait()
            log.seek(0)
            stderr = log.read().decode("utf-8", "replace")
        finally:
            log.close()
        if kind is None and code != 0:
            raise _failure(self.what, code, stderr)


# -- probing ---------------------------------------------------------------------------------

_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM = re.compile(r"^\s*Stream #\d+:\d+\S*: (Video|Audio): (.*)$", re.MULTILINE)
_FRAMES = re.compile(r"frame=\s*(\d+)")
_SIZE = re.compile(r"^(\d+)x(\d+)\b")
_FPS = re.compile(r"^(\d+(?:\.\d+)?)(k?) (fps|tbr)$")


def _split_top(header: str) -> list[str]:
    """Split a stream header on the commas that are not inside parentheses."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(header):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            parts.append(header[start:index].strip())
            start = index + 1
    parts.append(header[start:].strip())
    return parts


def _input_section(stderr: str) -> str:
    """The part of ffmpeg's report that describes the input (not the null output)."""
    return stderr.split("\nOutput #", 1)[0].split("\nStream mapping:", 1)[0]


def _seconds(section: str) -> float | None:
    found = _DURATION.search(section)
    return int(found[1]) * 3600 + int(found[2]) * 60 + float(found[3]) if found else None


def _streams(section: str) -> dict[str, str]:
    """The header of the first video and the first audio stream, by kind."""
    return {kind: header for kind, header in reversed(_STREAM.findall(section))}


def probe_media(path: Path) -> MediaInfo:
    """The duration and stream headers of ``path`` (``ffmpeg -i``; no ffprobe needed).
    Raises :class:`FFmpegError` with ffmpeg's words when it cannot read the file."""
    exe = ffmpeg_exe()
    done = subprocess.run([exe, "-hide_banner", "-nostdin", "-i", file_url(path)],
                          stdin=subprocess.DEVNULL, capture_output=True,
                          check=False)  # exits 1 ("no output file") even when all is well
    stderr = done.stderr.decode("utf-8", "replace")
    section = _input_section(stderr)
    if "Input #0" not in section:
        raise _failure(f"reading {str(path)!r}", done.returncode, stderr)
    streams = _streams(section)
    return MediaInfo(_seconds(section), streams.get("Video"), streams.get("Audio"))


def _video_fields(header: str) -> tuple[str, str, str, int, int, float]:
    """codec, profile, pix_fmt, width, height, fps from a ``Video:`` stream header."""
    parts = _split_top(header)
    codec_part = parts[0]
    codec = codec_part.split(" ", 1)[0]
    profile_match = re.match(r"\S+ \(([^)/]+)\)", codec_part)
    profile = profile_match[1].strip() if profile_match else ""
    pix_fmt = parts[1].split("(", 1)[0].strip() if len(parts) > 1 else ""
    width = height = 0
    fps = 0.0
    for part in parts[1:]:
        size = _SIZE.match(part)
        if size and not width:
            width, height = int(size[1]), int(size[2])
        rate = _FPS.match(part)
        if rate and (not fps or rate[3] == "fps"):
            fps = float(rate[1]) * (1000 if rate[2] else 1)
    return codec, profile, pix_fmt, width, height, fps


def mp4_boxes(path: Path) -> list[str]:
    """The types of the top-level boxes of an MP4 (ISO BMFF) file, in file order."""
    names = []
    size = path.stat().st_size
    with path.open("rb") as handle:
        offset = 0
        while offset + 8 <= size:
            handle.seek(offset)
            header = handle.read(8)
            length, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if length == 1:  # a 64-bit size follows the type
                length = int.from_bytes(handle.read(8), "big")
            elif length == 0:  # the box runs to the end of the file
                length = size - offset
            names.append(kind.decode("latin-1"))
            if length < 8:
                break  # corrupt: stop rather than loop
            offset += length
    return names


def is_faststart(path: Path) -> bool:
    """Whether the ``moov`` box (the index) comes before ``mdat`` (the media), so players
    can start before the whole file has arrived."""
    boxes = mp4_boxes(path)
    return "moov" in boxes and "mdat" in boxes and boxes.index("moov") < boxes.index("mdat")


def probe_video(path: Path) -> VideoInfo:
    """Size, frame rate, duration, frame count, codec, pixel format, audio and fast start of
    the video at ``path``. Raises :class:`FFmpegError` (ffmpeg's words) when ffmpeg cannot
    read it, and when it has no video stream."""
    path = Path(path)
    stderr = run_ffmpeg(["-hide_banner", "-nostdin", "-i", file_url(path), "-map", "0:v:0",
                         "-c", "copy", "-f", "null", "-"], what=f"probing {str(path)!r}")
    section = _input_section(stderr)
    streams = _streams(section)
    if "Video" not in streams:
        raise FFmpegError(f"{str(path)!r} has no video stream")
    codec, profile, pix_fmt, width, height, fps = _video_fields(streams["Video"])
    frames = _FRAMES.findall(stderr)
    audio = streams.get("Audio")
    return VideoInfo(
        width=width, height=height, fps=fps, duration=_seconds(section) or 0.0,
        frames=int(frames[-1]) if frames else 0, codec=codec, pix_fmt=pix_fmt,
        has_audio=audio is not None, faststart=is_faststart(path), profile=profile,
        audio_codec=audio.split(" ", 1)[0] if audio else None,
    )
