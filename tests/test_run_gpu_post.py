"""``backend.post: gpu`` in a run: the same assets as Pillow's, made by the device path (on
the CPU here, with ``post_device: cpu``); a missing GPU is told before anything renders."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import adgen
from adgen.backends.local import AssetMaker
from adgen.errors import CampaignError, PostProcessError
from adgen.jobs import Rendered, RenderJob
from adgen.post import gpu
from adgen.provenance.watermark import detect
from adgen.renderers.offline import OfflineRenderer
from tests.conftest import base_campaign, write_campaign

PLACEMENTS = ["feed_square", "story", "300x250", "728x90"]
DECISIONS = ("layout", "framing", "arrangement", "picture_box", "subject_box", "logo_box",
             "caption_boxes", "scrim", "logo_variant", "color_headline", "color_cta")


def campaign(tmp_path: Path, name: str, **backend: object) -> dict:
    data = base_campaign(tmp_path)
    data["placements"] = PLACEMENTS
    data["output"] = str(tmp_path / name)
    data["backend"] = {"name": "local", **backend}
    return data


def assets(result: adgen.RunResult) -> pd.DataFrame:
    rows = result.manifest.set_index(["variant_id", "placement"]).sort_index()
    assert (rows["status"] == "ok").all()
    return rows


def test_a_run_with_post_gpu_makes_pillow_s_assets(tmp_path: Path, monkeypatch) -> None:
    used: list[str] = []
    real = gpu.compose_on

    def spy(pixels, *args, **kwargs):
        used.append(str(pixels.device))
        return real(pixels, *args, **kwargs)

    monkeypatch.setattr(gpu, "compose_on", spy)
    pillow = assets(adgen.run(adgen.campaign_from_dict(campaign(tmp_path, "pillow"),
                                                       base_dir=tmp_path)))
    assert not used
    device = assets(adgen.run(adgen.campaign_from_dict(
        campaign(tmp_path, "device", post="gpu", post_device="cpu"), base_dir=tmp_path)))
    assert len(used) == len(device) and set(used) == {"cpu"}
    assert list(device.index) == list(pillow.index)
    for key, row in device.iterrows():
        ours, theirs = json.loads(row["checks"]), json.loads(pillow.loc[key, "checks"])
        for name in DECISIONS:
            assert ours.get(name) == theirs.get(name), (key, name)
        a = np.asarray(Image.open(tmp_path / "device" / row["path"]).convert("RGB"), float)
        b = np.asarray(Image.open(tmp_path / "pillow" / pillow.loc[key, "path"]).convert("RGB"),
                       float)
        assert a.shape == b.shape and np.abs(a - b).mean() <= 1.0, key


class OnDevice:
    """The offline renderer handing each picture on its device too, as the diffusers renderer
    does (here the device is the CPU); ``sent`` holds what it handed."""

    name = "offline"

    def __init__(self) -> None:
        self.inner = OfflineRenderer()
        self.sent: dict[str, torch.Tensor] = {}

    def __call__(self, jobs: Sequence[RenderJob]) -> list[Rendered]:
        out = []
        for result in self.inner(jobs):
            assert result.image is not None
            self.sent[result.job_key] = gpu.to_tensor(result.image)
            out.append(replace(result, pixels=self.sent[result.job_key]))
        return out


def test_the_device_path_starts_from_the_render_that_just_came(tmp_path: Path,
                                                               monkeypatch) -> None:
    """With backend.post: gpu, a render made in this process is used as the renderer handed
    it, its pixels already on the device: not read back from the cache, decoded and sent
    again (except a near-duplicate the quality gate rendered again: the cache has the new
    take); the assets are those made from the cache."""
    renderer = OnDevice()
    starts: list[bool] = []  # per render: its assets began from the renderer's tensor
    real_on_device = gpu.on_device

    def on_device(image, device, pixels=None):
        starts.append(pixels is not None)
        return real_on_device(image, device, pixels)

    used: list[torch.Tensor] = []
    real_compose = gpu.compose_on

    def spy(pixels, *args, **kwargs):
        used.append(pixels)
        return real_compose(pixels, *args, **kwargs)

    retaken: list[str] = []
    real_forget = AssetMaker.forget

    def forget(self, key):
        retaken.append(key)
        return real_forget(self, key)

    monkeypatch.setattr(gpu, "on_device", on_device)
    monkeypatch.setattr(gpu, "compose_on", spy)
    monkeypatch.setattr(AssetMaker, "forget", forget)
    spec = adgen.campaign_from_dict(campaign(tmp_path, "fresh", post="gpu", post_device="cpu"),
                                    base_dir=tmp_path)
    planned = set(adgen.plan(spec).jobs)
    fresh = assets(adgen.run(spec, make_renderer=lambda: renderer))
    assert len(starts) == len(planned) and len(used) == len(fresh)
    assert len(retaken) < len(planned) / 2  # this campaign has a near-duplicate or two
    assert starts.count(False) == len(retaken)
    handed = {t.data_ptr() for t in renderer.sent.values()}
    from_renderer = [t for t in used if t.data_ptr() in handed]
    assert len(from_renderer) == len(fresh) - fresh["job_key"].isin(retaken).sum()
    # the same renders read back from the cache (a second output, its cache copied) give the
    # same files
    cached = tmp_path / "cached"
    shutil.copytree(tmp_path / "fresh" / ".cache", cached / ".cache")
    starts.clear()
    again = assets(adgen.run(adgen.campaign_from_dict(campaign(
        tmp_path, "cached", post="gpu", post_device="cpu"), base_dir=tmp_path)))
    assert starts == [False] * len(planned)
    for key, row in fresh.iterrows():
        assert (tmp_path / "fresh" / row["path"]).read_bytes() == \
            (cached / again.loc[key, "path"]).read_bytes(), key


def test_the_device_path_watermarks_as_pillow_s_does(tmp_path: Path) -> None:
    """With the watermark on, the device path's ads carry it as Pillow's do: the same payload
    read back from each file, the same PSNR to within a tenth of a dB."""
    made = {}
    for name, backend in (("pillow", {}), ("device", {"post": "gpu", "post_device": "cpu"})):
        data = campaign(tmp_path, name, **backend)
        data["provenance"] = {"watermark": True}
        made[name] = assets(adgen.run(adgen.campaign_from_dict(data, base_dir=tmp_path)))
    marked = 0
    for key, row in made["device"].iterrows():
        ours = json.loads(row["checks"])["watermark"]
        theirs = json.loads(made["pillow"].loc[key, "checks"])["watermark"]
        if "skipped" in theirs:
            assert ours == theirs
            continue
        assert ours["payload"] == theirs["payload"] == row["watermark"]
        assert abs(ours["psnr_db"] - theirs["psnr_db"]) < 0.1, key
        with Image.open(tmp_path / "device" / row["path"]) as picture:
            found = detect(picture)
        assert found is not None and found.payload == row["watermark"], key
        marked += 1
    assert marked >= len(made["device"]) * 3 // 4  # the ads big enough to carry it


def test_post_gpu_without_a_cuda_gpu_is_told_before_rendering(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    path = write_campaign(tmp_path, campaign(tmp_path, "out", post="gpu"))
    with pytest.raises(PostProcessError, match=r"backend.post: gpu makes assets on 'cuda', "
                                               r"but torch sees no CUDA GPU here: .*"
                                               r"backend.post_device: cpu"):
        adgen.run(adgen.load_campaign(path))
    assert not (tmp_path / "out" / ".cache").exists() or not any(
        (tmp_path / "out" / ".cache").rglob("*.png"))  # nothing was rendered
    done = subprocess.run([sys.executable, "-m", "adgen", "run", str(path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "no CUDA GPU" in done.stderr


def test_bad_post_settings_are_explained(tmp_path: Path) -> None:
    with pytest.raises(CampaignError, match="post"):
        adgen.campaign_from_dict(campaign(tmp_path, "out", post="gpus"), base_dir=tmp_path)
    path = write_campaign(tmp_path, campaign(tmp_path, "out", post="gpu", post_device="tpu:0"))
    with pytest.raises(PostProcessError, match=r"backend.post_device 'tpu:0' is not a torch "
                                               r"device: use cuda, cuda:N or cpu"):
        adgen.run(adgen.load_campaign(path))


def test_png_and_webp_assets_come_out_of_the_device_path_too(tmp_path: Path) -> None:
    data = campaign(tmp_path, "out", post="gpu", post_device="cpu")
    data["placements"] = [{"placement": "300x250", "format": "png"},
                          {"placement": "feed_square", "format": "webp"}]
    rows = assets(adgen.run(adgen.campaign_from_dict(data, base_dir=tmp_path)))
    formats = {Image.open(io.BytesIO((tmp_path / "out" / p).read_bytes())).format
               for p in rows["path"]}
    assert formats == {"PNG", "WEBP"}
