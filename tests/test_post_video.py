"""Video ads: sizes, codec and timing of the written MP4, motion that keeps the subject, logo,
timed captions, end card, audio, hostile captions, byte budget and ffmpeg errors.

Every check decodes the written file with imageio-ffmpeg, as a user would. Clips are short and
small (1-2 s at 8-12 fps, custom sizes) plus one real 1080x1920 story.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import wave
from dataclasses import replace
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image, ImageDraw

from adgen.errors import AssetError, FFmpegError, PostProcessError
from adgen.placements import PRESETS, Placement
from adgen.post import ffmpeg as ffmpeg_mod
from adgen.post import video as video_mod
from adgen.post.ffmpeg import is_faststart, mp4_boxes
from adgen.post.image import Caption, LogoStyle, compose, compose_layers
from adgen.post.video import (
    VideoResult,
    VideoSpec,
    ffmpeg_exe,
    frames_to_video,
    probe_video,
    still_to_video,
)

SUBJECT = (196, 100, 276, 290)
"""The product, right of centre: a centred 9:16 crop (x 70..250) would cut it."""
PRODUCT = (200, 40, 40)
LOGO_RGB = (20, 40, 160)
BRAND = ["#0B3D91", "#F2A900"]
NAVY, AMBER = (11, 61, 145), (242, 169, 0)
STORY_SAFE = PRESETS["story"].safe
TALL = Placement("custom_270x480", 270, 480, STORY_SAFE)
FAST = VideoSpec(duration=1.5, fps=12, end_card=0.5, caption_in=0.25)
STILL = VideoSpec(duration=2.0, fps=12, end_card=0.5, caption_in=0.5, caption_out=1.0,
                  motion="none", fade=0.0)
"""No motion and no fades: frames before, during and after the captions compare exactly."""
HOSTILE = "'; drawtext=text=pwned:x=0 [out]; %{localtime} \\ : ,"
Box = tuple[int, int, int, int]


def make_picture(size: int = 320) -> Image.Image:
    """A sky gradient over a floor with a stripe pattern, and the red product at SUBJECT."""
    ramp = np.linspace(0, 1, size)[:, None, None]
    sky = np.array([235, 225, 205]) * (1 - ramp) + np.array([150, 185, 225]) * ramp
    image = Image.fromarray(np.broadcast_to(sky, (size, size, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 250, size, size), fill=(110, 95, 80))
    for x in range(0, size, 16):
        draw.line((x, 250, x + 30, size), fill=(90, 78, 66), width=3)
    draw.rectangle(SUBJECT, fill=PRODUCT)
    return image


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    return make_picture()


@pytest.fixture(scope="module")
def logo(tmp_path_factory: pytest.TempPathFactory) -> LogoStyle:
    path = tmp_path_factory.mktemp("brand") / "logo.png"
    image = Image.new("RGBA", (200, 80), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((10, 10, 189, 69), fill=(*LOGO_RGB, 255))
    image.save(path)
    return LogoStyle(path)


@pytest.fixture(scope="module")
def jingle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Half a second of a 440 Hz tone, as 16-bit WAV."""
    path = tmp_path_factory.mktemp("audio") / "jingle.wav"
    t = np.arange(4000) / 8000
    samples = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(8000)
        handle.writeframes(samples.tobytes())
    return path


def captions(headline: str = "Fresh drops daily") -> list[Caption]:
    return [Caption("headline", headline), Caption("cta", "Shop now")]


def decode(result: VideoResult, folder: Path, name: str = "ad.mp4") -> list[np.ndarray]:
    """Write the video and decode every frame (RGB) with imageio-ffmpeg."""
    path = folder / name
    path.write_bytes(result.data)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return [np.frombuffer(f, np.uint8).reshape(height, width, 3).copy() for f in reader]


def caption_box(result: VideoResult, role: str) -> Box:
    boxes = result.checks["caption_boxes"]
    assert isinstance(boxes, dict)
    box = boxes[role]
    assert isinstance(box, tuple) and len(box) == 4
    return box


def region(frame: np.ndarray, box: object) -> np.ndarray:
    assert isinstance(box, tuple) and len(box) == 4
    return frame[box[1]:box[3], box[0]:box[2]].astype(np.int16)


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def red_box(frame: np.ndarray) -> Box | None:
    mask = (frame[..., 0] > 150) & (frame[..., 1] < 90) & (frame[..., 2] < 90)
    ys, xs = np.nonzero(mask)
    if len(xs) < 20:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def near(rgb: np.ndarray, target: tuple[int, int, int], tolerance: int) -> np.ndarray:
    return np.all(np.abs(rgb.astype(np.int16) - np.array(target)) <= tolerance, axis=-1)


# -- the file --------------------------------------------------------------------------------


@pytest.mark.parametrize("placement", [
    TALL, Placement("custom_240x240", 240, 240), Placement("custom_240x300", 240, 300),
    Placement("custom_320x180", 320, 180),
], ids=lambda p: p.name)
def test_file_has_the_placement_size_codec_and_timing(picture: Image.Image, logo: LogoStyle,
                                                      placement: Placement,
                                                      tmp_path: Path) -> None:
    result = still_to_video(picture, placement, subject_box=SUBJECT, logo=logo,
                            captions=captions(), colors=BRAND, spec=FAST)
    path = tmp_path / "ad.mp4"
    path.write_bytes(result.data)
    info = probe_video(path)
    assert (info.width, info.height) == placement.size
    assert (info.codec, info.profile, info.pix_fmt) == ("h264", "High", "yuv420p")
    assert info.fps == 12 and info.frames == 18 and abs(info.duration - 1.5) < 0.05
    assert info.faststart and is_faststart(path)
    assert mp4_boxes(path).index("moov") < mp4_boxes(path).index("mdat")
    assert not info.has_audio and info.audio_codec is None
    frames = decode(result, tmp_path)
    assert len(frames) == 18 and frames[0].shape == (placement.height, placement.width, 3)
    assert (result.frames, result.fps, result.duration_s) == (18, 12.0, 1.5)


def test_real_story_keeps_logo_and_captions_in_the_safe_area(picture: Image.Image,
                                                             logo: LogoStyle,
                                                             tmp_path: Path) -> None:
    story = PRESETS["story"]
    spec = VideoSpec(duration=1.0, fps=8, end_card=0.25, caption_in=0.0)
    result = still_to_video(picture, story, subject_box=SUBJECT, logo=logo, captions=captions(),
                            colors=BRAND, spec=spec)
    frames = decode(result, tmp_path)
    assert len(frames) == 8 and frames[0].shape == (1920, 1080, 3)
    safe = story.safe.box(1080, 1920)
    for box in [result.checks["logo_box"], caption_box(result, "headline"),
                caption_box(result, "cta")]:
        assert isinstance(box, tuple)
        assert safe[0] <= box[0] and safe[1] <= box[1] and box[2] <= safe[2] and box[3] <= safe[3]
    logo_pixels = region(frames[3], result.checks["logo_box"]).reshape(-1, 3)
    assert near(logo_pixels, LOGO_RGB, 30).mean() > 0.8


# -- motion ----------------------------------------------------------------------------------


@pytest.mark.parametrize("motion", ["zoom_in", "zoom_out", "pan_left", "pan_right", "none"])
def test_subject_stays_whole_in_every_frame(picture: Image.Image, motion: str,
                                            tmp_path: Path) -> None:
    spec = VideoSpec(duration=1.5, fps=12, end_card=0.0, motion=motion,  # type: ignore[arg-type]
                     motion_amount=0.2)
    result = still_to_video(picture, TALL, subject_box=SUBJECT, spec=spec)
    boxes = [red_box(frame) for frame in decode(result, tmp_path)]
    for box in boxes:  # found, whole: not touching an edge of the 270x480 frame
        assert box is not None
        assert box[0] > 0 and box[1] > 0 and box[2] < 270 and box[3] < 480
    first, last = boxes[0], boxes[-1]
    assert first is not None and last is not None
    width_first, width_last = first[2] - first[0], last[2] - last[0]
    widths = [b[2] - b[0] for b in boxes if b is not None]
    steps = [b - a for a, b in itertools.pairwise(widths)]
    if motion == "zoom_in":  # smooth: the product grows a little in every frame, never shrinks
        assert width_last > width_first * 1.1 and min(steps) >= -1 and max(steps) <= 4
    elif motion == "zoom_out":
        assert width_first > width_last * 1.1
    elif motion == "pan_right":  # the camera moves right: the product moves left
        assert last[0] < first[0] - 5
    elif motion == "pan_left":
        assert last[0] > first[0] + 5
    else:
        assert boxes.count(first) == len(boxes)
    assert result.checks["motion"] == motion


def test_motion_keeps_the_subject_off_the_captions(picture: Image.Image, logo: LogoStyle,
                                                   tmp_path: Path) -> None:
    """A strong zoom in a square: the product would grow into the headline above it; the
    window is shifted or the zoom reduced so that it never does."""
    square = Placement("custom_240x240", 240, 240)
    spec = VideoSpec(duration=1.5, fps=12, end_card=0.0, caption_in=0.0, motion_amount=0.5)
    result = still_to_video(picture, square, subject_box=SUBJECT, logo=logo,
                            captions=captions(), spec=spec)
    headline = caption_box(result, "headline")
    for frame in decode(result, tmp_path):
        box = red_box(frame)
        assert box is not None and box[1] >= headline[3]
    amount = result.checks["motion_amount"]
    assert isinstance(amount, float) and 0 < amount <= 0.5


def test_subject_too_wide_for_the_placement_is_padded_not_cut(tmp_path: Path) -> None:
    wide = (20, 140, 300, 180)  # 280 px wide: a 9:16 window that holds it is taller than 320
    image = make_picture()
    ImageDraw.Draw(image).rectangle((0, 130, 320, 190), fill=(150, 185, 225))
    ImageDraw.Draw(image).rectangle(wide, fill=PRODUCT)
    spec = VideoSpec(duration=1.0, fps=12, end_card=0.0)
    still = still_to_video(image, TALL, subject_box=wide, spec=spec)
    clip = frames_to_video([image, image], 2, TALL, subject_box=wide, spec=spec)
    for result in (still, clip):
        assert result.checks["padded"] is True
        box = result.checks["subject_box"]  # the whole bar, 7:1, spans the frame's width
        assert isinstance(box, tuple) and box[0] == 0 and box[2] == 270
        assert abs((box[2] - box[0]) / (box[3] - box[1]) - 7) < 0.5
        inner = (box[0] + 2, box[1] + 2, box[2] - 2, box[3] - 2)
        for frame in decode(result, tmp_path):
            assert near(region(frame, inner).reshape(-1, 3), PRODUCT, 30).mean() > 0.95


def test_banner_layout_moves_the_picture_beside_a_still_panel(picture: Image.Image,
                                                              logo: LogoStyle,
                                                              tmp_path: Path) -> None:
    banner = Placement("custom_480x80", 480, 80)
    spec = VideoSpec(duration=1.0, fps=12, end_card=0.0, caption_in=0.0, motion_amount=0.3,
                     fade=0.0)
    result = still_to_video(picture, banner, subject_box=SUBJECT, logo=logo,
                            captions=captions(), colors=BRAND, spec=spec)
    assert result.checks["layout"] == "wide"
    picture_box = result.checks["picture_box"]
    assert isinstance(picture_box, tuple)
    frames = decode(result, tmp_path)
    assert frames[0].shape == (80, 480, 3)
    first, last = (region(f, picture_box) for f in (frames[0], frames[-1]))
    assert mean_diff(first, last) > 3  # the picture moves...
    panel = (picture_box[2], 0, 480, 80)
    assert mean_diff(region(frames[0], panel), region(frames[-1], panel)) < 1  # ...the panel not
    assert near(region(frames[0], panel).reshape(-1, 3), NAVY, 10).mean() > 0.5


# -- logo, captions, end card ----------------------------------------------------------------


def test_captions_show_only_while_timed_and_look_like_the_image(picture: Image.Image,
                                                                logo: LogoStyle,
                                                                tmp_path: Path) -> None:
    result = still_to_video(picture, TALL, subject_box=SUBJECT, logo=logo, captions=captions(),
                            colors=BRAND, spec=STILL)
    frames = decode(result, tmp_path)
    before, during, after = frames[3], frames[9], frames[15]  # 0.25 s, 0.75 s, 1.25 s
    for role in ("headline", "cta"):
        box = caption_box(result, role)
        assert mean_diff(region(before, box), region(after, box)) < 2
        assert mean_diff(region(before, box), region(during, box)) > 20
    for frame in (before, during, after):  # the logo stays all along
        logo_pixels = region(frame, result.checks["logo_box"]).reshape(-1, 3)
        assert near(logo_pixels, LOGO_RGB, 30).mean() > 0.8
    still = compose(picture, TALL, subject_box=SUBJECT, logo=logo, captions=captions(),
                    colors=BRAND)
    assert mean_diff(during, np.asarray(still.image)) < 3
    assert result.checks["caption_in"] == 0.5 and result.checks["caption_out"] == 1.0


def test_captions_fade_in(picture: Image.Image, tmp_path: Path) -> None:
    spec = VideoSpec(duration=2.0, fps=12, end_card=0.0, caption_in=0.5, motion="none",
                     fade=0.25)
    result = still_to_video(picture, TALL, subject_box=SUBJECT, captions=captions(), spec=spec)
    frames = decode(result, tmp_path)
    box = caption_box(result, "cta")
    full = mean_diff(region(frames[3], box), region(frames[12], box))
    partial = mean_diff(region(frames[3], box), region(frames[7], box))  # a third of the fade
    assert 0.15 * full < partial < 0.6 * full


def test_end_card_shows_logo_and_cta_on_the_brand_colours(picture: Image.Image,
                                                          logo: LogoStyle,
                                                          tmp_path: Path) -> None:
    result = still_to_video(picture, TALL, subject_box=SUBJECT, logo=logo, captions=captions(),
                            colors=BRAND, spec=FAST)
    frames = decode(result, tmp_path)
    assert result.checks["end_card_start"] == 1.0
    last = frames[-1]
    assert near(last, NAVY, 10).mean() > 0.7
    assert near(frames[10], NAVY, 10).mean() < 0.05  # before the card: the picture
    cta = region(last, result.checks["end_card_cta_box"]).reshape(-1, 3)
    assert near(cta, AMBER, 14).mean() > 0.5
    logo_box = result.checks["end_card_logo_box"]
    assert near(region(last, logo_box).reshape(-1, 3), LOGO_RGB, 30).mean() > 0.5
    assert red_box(last) is None


def test_no_end_card(picture: Image.Image, logo: LogoStyle, tmp_path: Path) -> None:
    spec = VideoSpec(duration=1.0, fps=12, end_card=0.0)
    result = still_to_video(picture, TALL, subject_box=SUBJECT, logo=logo, captions=captions(),
                            colors=BRAND, spec=spec)
    frames = decode(result, tmp_path)
    assert result.checks["end_card_start"] is None and len(frames) == 12
    assert red_box(frames[-1]) is not None and near(frames[-1], NAVY, 10).mean() < 0.05


# -- audio -----------------------------------------------------------------------------------


def _pcm(path: Path) -> np.ndarray:
    done = subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-i", str(path), "-f", "s16le",
                           "-ac", "1", "-ar", "8000", "-"], capture_output=True, check=True)
    return np.frombuffer(done.stdout, "<i2").astype(np.float64)


def _rms(samples: np.ndarray, start: float, end: float) -> float:
    return float(np.sqrt(np.mean(samples[int(start * 8000):int(end * 8000)] ** 2)))


def test_jingle_is_looped_to_the_clip_and_faded_out(picture: Image.Image, jingle: Path,
                                                    tmp_path: Path) -> None:
    spec = VideoSpec(duration=1.5, fps=12, end_card=0.5, audio=jingle, audio_fade=0.5)
    result = still_to_video(picture, TALL, subject_box=SUBJECT, spec=spec)
    path = tmp_path / "ad.mp4"
    path.write_bytes(result.data)
    info = probe_video(path)
    assert info.has_audio and info.audio_codec == "aac" and info.faststart
    assert result.checks["audio_looped"] is True
    samples = _pcm(path)
    assert abs(len(samples) / 8000 - 1.5) < 0.1
    loud = _rms(samples, 0.1, 0.4)
    assert loud > 3000
    assert _rms(samples, 0.6, 0.9) > 0.5 * loud  # the 0.5 s jingle loops
    assert _rms(samples, len(samples) / 8000 - 0.05, len(samples) / 8000) < 0.2 * loud


def test_jingle_errors(picture: Image.Image, tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(AssetError, match=r"jingle '.*nope\.wav' does not exist: check the path"):
        still_to_video(picture, TALL, spec=replace(FAST, audio=missing))
    image = tmp_path / "still.png"
    picture.save(image)
    with pytest.raises(AssetError, match=r"jingle '.*still\.png' has no audio stream"):
        still_to_video(picture, TALL, spec=replace(FAST, audio=image))


# -- safety ----------------------------------------------------------------------------------


def test_hostile_caption_is_drawn_literally_and_never_reaches_ffmpeg(
        picture: Image.Image, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    commands: list[list[str]] = []
    real_popen = ffmpeg_mod.subprocess.Popen

    def spy(args: list[str], **kwargs: object) -> object:
        commands.append(list(args))
        return real_popen(args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(ffmpeg_mod.subprocess, "Popen", spy)
    hostile = [Caption("headline", HOSTILE), Caption("cta", "Go")]
    result = still_to_video(picture, TALL, subject_box=SUBJECT, captions=hostile, spec=STILL)
    commands = [command for command in commands if "pipe:" in command]
    assert len(commands) == 1
    for arg in commands[0]:
        for word in ("pwned", "drawtext", "localtime", "%{", "[out]"):
            assert word not in arg
    assert "-filter_complex" not in commands[0] and result.checks["filters"] == ""
    assert commands[0][commands[0].index("-pix_fmt") + 1] == "yuv420p"  # frames come converted
    frames = decode(result, tmp_path)
    still = compose(picture, TALL, subject_box=SUBJECT, captions=hostile)
    box = caption_box(result, "headline")
    assert mean_diff(region(frames[9], box), region(np.asarray(still.image), box)) < 4
    assert mean_diff(region(frames[9], box), region(frames[3], box)) > 20


# -- budgets and limits ----------------------------------------------------------------------


def test_byte_budget_raises_the_crf_until_it_fits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8))
    square = Placement("custom_160x160", 160, 160)
    spec = VideoSpec(duration=1.0, fps=12, end_card=0.0)
    plain = still_to_video(noise, square, spec=spec)
    budget = len(plain.data) // 2
    fitted = still_to_video(noise, square, spec=VideoSpec(duration=1.0, fps=12, end_card=0.0,
                                                          max_bytes=budget))
    assert len(fitted.data) <= budget
    crf = fitted.checks["crf"]
    assert isinstance(crf, int) and crf > 20
    assert len(decode(fitted, tmp_path)) == 12
    with pytest.raises(PostProcessError, match=(
            r"cannot encode the 160x160 video for placement 'custom_160x160' \(160x160\) "
            r"within 2,000 bytes: the smallest file reached is [\d,]+ bytes \(CRF 38\); "
            r"raise max_bytes, shorten the video, lower its fps or raise max_crf")):
        still_to_video(noise, square, spec=VideoSpec(duration=1.0, fps=12, end_card=0.0,
                                                     max_bytes=2000))


def test_duration_over_the_placement_limit(picture: Image.Image) -> None:
    with pytest.raises(PostProcessError) as error:
        still_to_video(picture, TALL, spec=VideoSpec(duration=20.0, max_duration=15.0))
    assert str(error.value) == (
        "the video for placement 'custom_270x480' (270x480) would last 20 s, more than the "
        "placement's limit of 15 s: set the video duration to at most 15 s"
    )


@pytest.mark.parametrize(("options", "message"), [
    ({"duration": 0.0}, "duration 0.0 s must be positive"),
    ({"duration": 1.0, "end_card": 1.0}, "end_card 1.0 s must be at least 0 and shorter"),
    ({"crf": 60}, "crf 60 and max_crf 38 must satisfy"),
    ({"preset": "turbo"}, "preset 'turbo' is not an x264 preset"),
    ({"motion": "spin"}, "motion 'spin' is not one of zoom_in, zoom_out"),
    ({"caption_in": 1.0, "caption_out": 0.5}, "caption_out 0.5 s must come after caption_in"),
    ({"max_bytes": 0}, "max_bytes 0 must be a positive number of bytes"),
])
def test_spec_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(PostProcessError, match=re.escape(f"video settings: {message}")):
        VideoSpec(**options)  # type: ignore[arg-type]


def test_odd_sides_are_rounded_down_to_even(picture: Image.Image, tmp_path: Path) -> None:
    result = still_to_video(picture, Placement("odd", 271, 481, STORY_SAFE), spec=FAST)
    path = tmp_path / "ad.mp4"
    path.write_bytes(result.data)
    info = probe_video(path)
    assert (info.width, info.height) == (270, 480) and result.checks["size"] == (270, 480)


# -- ffmpeg errors ---------------------------------------------------------------------------


def test_missing_ffmpeg_says_how_to_install_it(picture: Image.Image, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "bin" / "ffmpeg"
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(missing))
    expected = (rf"the ffmpeg binary '{re.escape(str(missing))}' \(from IMAGEIO_FFMPEG_EXE\) "
                r"does not exist or is not executable: install it with `pip install "
                r"imageio-ffmpeg`")
    with pytest.raises(FFmpegError, match=expected):
        ffmpeg_exe()
    with pytest.raises(FFmpegError, match=expected):
        still_to_video(picture, TALL, spec=FAST)


def test_ffmpeg_failure_carries_its_last_lines(picture: Image.Image, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho 'starting up' >&2\n"
                    "echo '[libx264] boom: the encoder exploded' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(fake))
    with pytest.raises(FFmpegError) as error:
        still_to_video(picture, TALL, spec=FAST)
    assert str(error.value) == (
        "ffmpeg failed (exit code 3) while encoding the video for placement 'custom_270x480' "
        "(270x480); its last lines:\nstarting up\n[libx264] boom: the encoder exploded"
    )


def test_an_error_while_making_frames_stops_ffmpeg(picture: Image.Image, logo: LogoStyle,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    encoders: list[subprocess.Popen[bytes]] = []
    real_popen = ffmpeg_mod.subprocess.Popen

    def spy(args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        process: subprocess.Popen[bytes] = real_popen(args, **kwargs)  # type: ignore[call-overload]
        if "pipe:" in args:
            encoders.append(process)
        return process

    def broken(*_args: object) -> None:
        raise RuntimeError("a bug while pasting the logo")

    monkeypatch.setattr(ffmpeg_mod.subprocess, "Popen", spy)
    monkeypatch.setattr(video_mod.Overlay, "over", broken)
    with pytest.raises(RuntimeError, match="a bug while pasting the logo"):
        still_to_video(picture, TALL, logo=logo, spec=FAST)
    assert len(encoders) == 1 and encoders[0].poll() is not None  # killed, not left running


def test_probe_of_a_file_that_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("not a video at all")
    with pytest.raises(FFmpegError, match=r"(?s)ffmpeg failed \(exit code \d+\) while probing "
                                          r"'.*notes\.mp4'; its last lines:\n.*Invalid data"):
        probe_video(path)


def test_mp4_box_order(tmp_path: Path) -> None:
    def box(kind: bytes, body: bytes = b"") -> bytes:
        return (8 + len(body)).to_bytes(4, "big") + kind + body

    large_mdat = (1).to_bytes(4, "big") + b"mdat" + (16 + 4).to_bytes(8, "big") + b"data"
    fast = tmp_path / "fast.mp4"
    fast.write_bytes(box(b"ftyp", b"isom") + box(b"moov", b"x" * 10) + large_mdat)
    slow = tmp_path / "slow.mp4"
    slow.write_bytes(box(b"ftyp", b"isom") + large_mdat + box(b"moov", b"x" * 10))
    assert mp4_boxes(fast) == ["ftyp", "moov", "mdat"] and is_faststart(fast)
    assert mp4_boxes(slow) == ["ftyp", "mdat", "moov"] and not is_faststart(slow)


# -- generated frames ------------------------------------------------------------------------


def moving_square(count: int, size: int = 192) -> list[Image.Image]:
    frames = []
    for i in range(count):
        frame = Image.new("RGB", (size, size), (200, 210, 225))
        x = 10 + 12 * i
        ImageDraw.Draw(frame).rectangle((x, 80, x + 30, 110), fill=PRODUCT)
        frames.append(frame)
    return frames


def test_frames_to_video_retimes_the_clip(tmp_path: Path) -> None:
    square = Placement("custom_96x96", 96, 96)
    spec = VideoSpec(duration=2.0, fps=12, end_card=0.0, motion="none")
    result = frames_to_video(moving_square(12), 8, square, spec=spec)  # a 1.5 s clip
    frames = decode(result, tmp_path)
    assert len(frames) == 24
    for k, frame in enumerate(frames):
        box = red_box(frame)
        source = min(11, int(k / 12 * 8 + 1e-6))
        assert box is not None and abs(box[0] - (10 + 12 * source) / 2) <= 1.5
    assert mean_diff(frames[-1], frames[18]) < 1  # the last frame held for 0.5 s
    assert result.checks["held_s"] == 0.5 and result.checks["cut_s"] == 0.0


def test_frames_to_video_checks_its_frames() -> None:
    square = Placement("custom_96x96", 96, 96)
    with pytest.raises(PostProcessError, match="got no frames"):
        frames_to_video([], 8, square)
    frames = [*moving_square(2), Image.new("RGB", (100, 100))]
    with pytest.raises(PostProcessError, match=r"frame 2 is 100x100 but frame 0 is 192x192"):
        frames_to_video(frames, 8, square)


# -- compose_layers (used for the video layers) ------------------------------------------------


@pytest.mark.parametrize("name", ["story", "feed_square", "landscape", "iab_728x90"])
def test_compose_layers_rebuild_the_still(name: str, logo: LogoStyle) -> None:
    row = ((np.arange(256) // 6) % 2 * 255).astype(np.uint8)  # stripes: scrims are needed
    stripes = Image.fromarray(np.dstack([np.tile(row, (256, 1))] * 3))
    for image in (make_picture(), stripes):
        layers = compose_layers(image, PRESETS[name], logo=logo, captions=captions(),
                                colors=BRAND)
        rebuilt = layers.background.convert("RGBA")
        for layer in [layers.logo, *layers.captions.values()]:
            assert layer is not None
            rebuilt.alpha_composite(layer)
        expected = compose(image, PRESETS[name], logo=logo, captions=captions(), colors=BRAND)
        assert np.array_equal(np.asarray(layers.composed.image), np.asarray(expected.image))
        assert np.abs(np.asarray(rebuilt.convert("RGB")).astype(int)
                      - np.asarray(expected.image).astype(int)).max() <= 2
        assert set(layers.captions) == {"headline", "cta"}

