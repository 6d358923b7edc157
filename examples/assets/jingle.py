"""Regenerate examples/assets/jingle.m4a, the example brand's 3-second jingle (run once).

A four-note marimba-like motif over a soft chord, synthesised with numpy (additive sines with
exponential decay), written as 16-bit WAV with the standard library and encoded to AAC with
the ffmpeg that imageio-ffmpeg ships. Procedural, so there is no licence to worry about.

    .venv/bin/python examples/assets/jingle.py
"""

from __future__ import annotations

import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

RATE = 44_100
OUT = Path(__file__).with_name("jingle.m4a")
MOTIF = [(0.00, 72), (0.22, 76), (0.44, 79), (0.66, 84)]  # (start s, MIDI note): C E G C
CHORD = [48, 55, 64, 67]  # C major, low and wide


def _hz(note: int) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _strike(note: int, length: float) -> np.ndarray:
    """A mallet strike: a fundamental and two inharmonic partials, decaying fast."""
    t = np.arange(int(length * RATE)) / RATE
    f = _hz(note)
    tone = (np.sin(2 * np.pi * f * t) + 0.35 * np.sin(2 * np.pi * f * 3.9 * t) * np.exp(-9 * t)
            + 0.15 * np.sin(2 * np.pi * f * 9.2 * t) * np.exp(-20 * t))
    attack = np.minimum(1.0, t / 0.004)
    return tone * attack * np.exp(-3.2 * t)


def _pad(length: float) -> np.ndarray:
    """A soft chord that swells in and fades out."""
    t = np.arange(int(length * RATE)) / RATE
    chord = sum(np.sin(2 * np.pi * _hz(n) * t + i) for i, n in enumerate(CHORD))
    envelope = np.minimum(1.0, t / 0.6) * np.minimum(1.0, (length - t) / 1.2)
    return 0.12 * chord * envelope


def synthesise(length: float = 3.0) -> np.ndarray:
    """The jingle as float samples in [-1, 1]."""
    mix = _pad(length)
    for start, note in MOTIF:
        strike = _strike(note, length - start)
        begin = int(start * RATE)
        mix[begin:begin + len(strike)] += 0.5 * strike
    final = _strike(79, length - 0.9) * 0.3  # a G under the last C
    mix[int(0.9 * RATE):int(0.9 * RATE) + len(final)] += final
    return 0.7 * mix / np.max(np.abs(mix))


def main() -> None:
    import imageio_ffmpeg

    samples = (synthesise() * 32767).astype("<i2")
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "jingle.wav"
        with wave.open(str(wav), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(RATE)
            handle.writeframes(samples.tobytes())
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
                        "-y", "-i", f"file:{wav}", "-c:a", "aac", "-b:a", "64k",
                        "-movflags", "+faststart", f"file:{OUT.resolve()}"], check=True)
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
