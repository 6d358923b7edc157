"""Real model architectures with random weights, built offline from bundled configs.

Each architecture is a JSON file in this package (configs only, no weights; the file names the
repository each config was read from): ``sd-turbo`` (SD-Turbo / SD 2.1, 512 px), ``sdxl-turbo``
(SDXL-Turbo / SDXL, 1024 px, two text encoders), ``ltx-video`` (LTX-Video 0.9.0) and ``taesd``
(the tiny draft VAE). :func:`build_pipeline` instantiates one with seeded random weights, so
compute and memory are those of the real model while nothing is downloaded: this is how GPU
throughput is measured on machines without a model hub. The pictures are noise.

The renderers take such a pipeline as the model id ``random:<name>`` (``random:sd-turbo``), and
``random:<name>:tiny`` for the same architecture with shrunk channels and layers (same block
layout, VAE scale and pipeline class) that runs on a CPU in tests::

    pipe = build_pipeline("sdxl-turbo", device="cuda", dtype="bfloat16")
    DiffusersRenderer("random:sd-turbo:tiny")   # CPU tests

The tokenizer is a small byte-level CLIP BPE written on the fly (:func:`offline_tokenizer`); its
token ids fit every bundled text encoder's vocabulary, so sequence lengths (77, or 128 for T5)
and the text encoders' compute are the real ones.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from adgen.errors import RenderError

__all__ = ["ARCHS", "RANDOM_PREFIX", "arch_spec", "build_component", "build_pipeline",
           "offline_tokenizer", "parse_random_model"]

ARCHS = ("sd-turbo", "sdxl-turbo", "ltx-video", "taesd")
"""The bundled architectures."""

RANDOM_PREFIX = "random:"
"""Model ids starting with this name a bundled architecture with random weights."""

_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"
_MERGES = ("t h", "th e</w>", "a n", "o n", "e r", "i n", "a r", "o r", "e n", "a t")
_MAX_TOKENS = 77
_TRANSFORMERS = frozenset({"CLIPTextModel", "CLIPTextModelWithProjection", "T5EncoderModel"})


@cache
def arch_spec(name: str) -> dict[str, Any]:
    """The bundled JSON of architecture ``name`` (see :data:`ARCHS`)."""
    if name not in ARCHS:
        raise RenderError(f"unknown architecture {name!r}: use one of {', '.join(ARCHS)}")
    text = resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    spec: dict[str, Any] = json.loads(text)
    return spec


def parse_random_model(model: str) -> tuple[str, bool] | None:
    """``"random:sd-turbo:tiny"`` -> ``("sd-turbo", True)``; ``None`` for other model ids."""
    if not model.startswith(RANDOM_PREFIX):
        return None
    name, _, size = model[len(RANDOM_PREFIX):].partition(":")
    if name not in ARCHS or size not in ("", "tiny"):
        raise RenderError(f"model {model!r} names no bundled architecture: use random:NAME or "
                          f"random:NAME:tiny with NAME one of {', '.join(ARCHS)}")
    return name, size == "tiny"


# -- tokenizer ----------------------------------------------------------------------------------


def _byte_chars() -> list[str]:
    """The 256 printable characters byte-level BPE uses for the bytes 0..255 (GPT-2's table)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = [], 0
    for byte in range(256):
        if byte in keep:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _write_tokenizer_files(folder: Path) -> int:
    """Write a small CLIP vocab.json + merges.txt into ``folder``; return the vocabulary size."""
    tokens = _byte_chars()
    tokens += [c + "</w>" for c in tokens]
    tokens += [m.replace(" ", "") for m in _MERGES]
    tokens += [_BOS, _EOS]
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges = "#version: 0.2\n" + "\n".join(_MERGES) + "\n"
    (folder / "merges.txt").write_text(merges, encoding="utf-8")
    config = {"model_max_length": _MAX_TOKENS, "bos_token": _BOS, "eos_token": _EOS,
              "pad_token": _EOS, "unk_token": _EOS}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return len(vocab)


def offline_tokenizer() -> tuple[Any, int]:
    """A byte-level CLIP tokenizer built without any download, and its vocabulary size.

    End of text is its highest id, as in the real CLIP vocabulary (CLIP pools there).
    """
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        vocab_size = _write_tokenizer_files(Path(tmp))
        return CLIPTokenizer.from_pretrained(tmp), vocab_size


# -- building -----------------------------------------------------------------------------------


def build_component(name: str, component: str, *, tiny: bool = False, device: str = "cpu",
                    dtype: str = "float32", seed: int = 0, tokenizer: Any = None) -> Any:
    """One model of an architecture (``"unet"``, ``"vae"``, ...) with seeded random weights.

    The weights are created directly on ``device`` (fast on a GPU), then cast to ``dtype``.
    """
    import diffusers
    import torch
    import transformers

    entry = arch_spec(name)["components"][component]
    config = {**entry["config"], **(entry.get("tiny", {}) if tiny else {})}
    torch.manual_seed(seed)
    with torch.device(device):
        if entry["class"] in _TRANSFORMERS:
            if tokenizer is not None:
                ids = {"bos_token_id": tokenizer.bos_token_id,
                       "eos_token_id": tokenizer.eos_token_id,
                       "pad_token_id": tokenizer.pad_token_id}
                config = {**config, **{k: v for k, v in ids.items() if v is not None}}
            model_cls = getattr(transformers, entry["class"])
            model = model_cls(model_cls.config_class(**config))
        else:
            model = getattr(diffusers, entry["class"])(**config)
    if dtype != "float32":
        with _quiet_diffusers():  # it warns that casting skips fp32-only modules: there are none
            model = model.to(dtype=getattr(torch, dtype))
    return model.eval().requires_grad_(False)


@contextmanager
def _quiet_diffusers() -> Iterator[None]:
    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def build_pipeline(name: str, *, tiny: bool = False, device: str = "cpu",
                   dtype: str = "float32", seed: int = 0) -> Any:
    """The diffusers pipeline of architecture ``name`` with seeded random weights on ``device``.

    ``tiny`` shrinks channels and layers (the JSON's ``tiny`` overrides) for CPU tests. The same
    ``name``, ``tiny``, ``seed`` and device type give the same weights.
    """
    import diffusers

    spec = arch_spec(name)
    if "pipeline" not in spec:
        raise RenderError(f"architecture {name!r} is a component, not a pipeline: use "
                          f"build_component({name!r}, 'vae')")
    tokenizer, _ = offline_tokenizer()
    parts: dict[str, Any] = {}
    for i, (component, entry) in enumerate(spec["components"].items()):
        if component.startswith("tokenizer"):
            parts[component] = tokenizer
        elif component == "scheduler":
            parts[component] = getattr(diffusers, entry["class"])(**entry["config"])
        else:
            parts[component] = build_component(name, component, tiny=tiny, device=device,
                                               dtype=dtype, seed=seed + i, tokenizer=tokenizer)
    pipe = getattr(diffusers, spec["pipeline"])(**parts, **spec.get("extra", {}))
    pipe.set_progress_bar_config(disable=True)
    return pipe
