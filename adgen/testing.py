"""Helpers for tests: tiny, seeded, randomly initialised diffusers pipelines built offline.

The pipelines follow the dummy components of diffusers' own fast tests, so a whole pipeline
saves, loads with ``from_pretrained`` and renders a 64 px image on a CPU in well under a second.
Their pictures are noise, but they are exactly reproducible, which is what tests need::

    from adgen.testing import make_tiny_sd_pipeline
    folder = make_tiny_sd_pipeline(tmp_path / "tiny-sd")
    renderer = DiffusersRenderer(str(folder))
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["make_tiny_sd_pipeline"]

_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"
_MERGES = ("t h", "th e</w>", "a n", "o n", "e r", "i n", "a r", "o r", "e n", "a t")
_MAX_TOKENS = 77


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


def make_tiny_sd_pipeline(path: Path, *, inpainting: bool = False, seed: int = 0) -> Path:
    """Build a tiny random Stable Diffusion pipeline, save it as safetensors in ``path``.

    ``inpainting=True`` gives a ``StableDiffusionInpaintPipeline`` whose UNet takes 9 input
    channels (latents, mask, masked image), like the real inpainting checkpoints. The weights
    depend only on ``seed``. The VAE downsamples by 2, so sizes must be multiples of 8.
    Returns ``path``.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        vocab_size = _write_tokenizer_files(Path(tmp))
        tokenizer = CLIPTokenizer.from_pretrained(tmp)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=32,
        in_channels=9 if inpainting else 4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8, norm_num_groups=2, attention_head_dim=2,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=[4, 8], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4, norm_num_groups=2,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, vocab_size=vocab_size, hidden_size=8,
        intermediate_size=16, num_attention_heads=2, num_hidden_layers=2,
        max_position_embeddings=_MAX_TOKENS, layer_norm_eps=1e-5,
    ))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        timestep_spacing="trailing", steps_offset=1,
    )
    cls = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    pipe: Any = cls(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
               scheduler=scheduler, safety_checker=None, feature_extractor=None,
               image_encoder=None, requires_safety_checker=False)
    pipe.save_pretrained(path, safe_serialization=True)
    return path
