"""Helpers for tests: tiny, seeded, randomly initialised diffusers pipelines built offline.

The pipelines follow the dummy components of diffusers' own fast tests, so a whole pipeline
saves, loads with ``from_pretrained`` and renders a 64 px image on a CPU in well under a second.
Their pictures are noise, but they are exactly reproducible, which is what tests need::

    from adgen.testing import make_tiny_sd_pipeline
    folder = make_tiny_sd_pipeline(tmp_path / "tiny-sd")
    renderer = DiffusersRenderer(str(folder))

``make_tiny_animatediff_pipeline`` does the same for text-to-video (AnimateDiff)::

    folder = make_tiny_animatediff_pipeline(tmp_path / "tiny-animatediff")
    renderer = DiffusersVideoRenderer(str(folder), num_frames=4)

and ``make_tiny_ltx_pipeline`` for LTX-Video, text-to-video or image-to-video.

The quality gate's models come the same way: ``make_tiny_clip`` (a ``CLIPModel`` with its
tokenizer and image processor) and ``make_tiny_safety_checker`` (diffusers'
``StableDiffusionSafetyChecker``, whose concepts can be set to given pictures' embeddings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adgen.archs import offline_tokenizer

__all__ = ["make_tiny_animatediff_pipeline", "make_tiny_clip", "make_tiny_ltx_pipeline",
           "make_tiny_safety_checker", "make_tiny_sd_pipeline"]

_MAX_TOKENS = 77


def _tiny_tokenizer() -> tuple[Any, int]:
    """The offline CLIP tokenizer of the tiny pipelines, and its vocabulary size."""
    return offline_tokenizer()


def _tiny_vae(seed: int) -> Any:
    """A 2-level AutoencoderKL (downsamples by 2) with 4 latent channels."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=[4, 8], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4, norm_num_groups=2,
    )


def _tiny_text_encoder(tokenizer: Any, vocab_size: int, seed: int) -> Any:
    """A 2-layer CLIP text encoder with hidden size 8 for ``tokenizer``."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    return CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, vocab_size=vocab_size, hidden_size=8,
        intermediate_size=16, num_attention_heads=2, num_hidden_layers=2,
        max_position_embeddings=_MAX_TOKENS, layer_norm_eps=1e-5,
    ))


def make_tiny_sd_pipeline(path: Path, *, inpainting: bool = False, seed: int = 0,
                          safety_checker: list[Any] | None = None) -> Path:
    """Build a tiny random Stable Diffusion pipeline, save it as safetensors in ``path``.

    ``inpainting=True`` gives a ``StableDiffusionInpaintPipeline`` whose UNet takes 9 input
    channels (latents, mask, masked image), like the real inpainting checkpoints. The weights
    depend only on ``seed``. The VAE downsamples by 2, so sizes must be multiples of 8.
    ``safety_checker`` (a list of pictures it calls unsafe, see :func:`make_tiny_safety_checker`)
    ships a safety checker as Stable Diffusion 1.x does: ``safety_checker/`` and its image
    processor in ``feature_extractor/``. Returns ``path``.
    """
    import torch
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    path = Path(path)
    tokenizer, vocab_size = _tiny_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=32,
        in_channels=9 if inpainting else 4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8, norm_num_groups=2, attention_head_dim=2,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        timestep_spacing="trailing", steps_offset=1,
    )
    cls = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    checker, processor = (None, None) if safety_checker is None else _tiny_safety_checker(
        safety_checker, seed)
    pipe: Any = cls(unet=unet, vae=_tiny_vae(seed), text_encoder=_tiny_text_encoder(
                        tokenizer, vocab_size, seed), tokenizer=tokenizer,
                    scheduler=scheduler, safety_checker=checker, feature_extractor=processor,
                    image_encoder=None, requires_safety_checker=checker is not None)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def make_tiny_animatediff_pipeline(path: Path, *, seed: int = 0) -> Path:
    """Build a tiny random AnimateDiff text-to-video pipeline, save it as safetensors in ``path``.

    The SD-style UNet of :func:`make_tiny_sd_pipeline` is combined with a tiny ``MotionAdapter``
    (temporal attention over up to 32 frames) into a ``UNetMotionModel``; the folder holds it and
    the adapter, and loads back with ``DiffusionPipeline.from_pretrained`` as an
    ``AnimateDiffPipeline``. The scheduler is DDIM, as in AnimateDiff's examples. The weights
    depend only on ``seed``; sizes must be multiples of 8. A 4-frame 32 px video in 2 steps takes
    well under a second on a CPU. Returns ``path``.
    """
    import torch
    from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter, UNet2DConditionModel

    path = Path(path)
    tokenizer, vocab_size = _tiny_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=32,
        in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8, norm_num_groups=2, attention_head_dim=2,
    )
    torch.manual_seed(seed)
    adapter = MotionAdapter(
        block_out_channels=(4, 8), motion_layers_per_block=1, motion_norm_num_groups=2,
        motion_num_attention_heads=2, motion_max_seq_length=32,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False,
        steps_offset=1,
    )
    pipe: Any = AnimateDiffPipeline(
        unet=unet, motion_adapter=adapter, vae=_tiny_vae(seed),
        text_encoder=_tiny_text_encoder(tokenizer, vocab_size, seed), tokenizer=tokenizer,
        scheduler=scheduler, feature_extractor=None, image_encoder=None)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def make_tiny_ltx_pipeline(path: Path, *, image_to_video: bool = False, seed: int = 0) -> Path:
    """Build a tiny random LTX-Video pipeline, save it as safetensors in ``path``.

    ``image_to_video=True`` gives an ``LTXImageToVideoPipeline`` (its call takes the first
    frame as ``image``), else an ``LTXPipeline``; both load back with
    ``DiffusionPipeline.from_pretrained``. The components follow diffusers' LTX fast tests, with a
    1-layer T5 encoder built from config and the offline CLIP tokenizer (the pipeline only needs
    token ids and an attention mask). The VAE downsamples by 4 in space and time, so frame counts
    of 4k+1 (5, 9) fit. The weights depend only on ``seed``. Returns ``path``.
    """
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXImageToVideoPipeline,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    path = Path(path)
    tokenizer, vocab_size = _tiny_tokenizer()
    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=2,
        attention_head_dim=8, cross_attention_dim=16, num_layers=1, caption_channels=16,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False), upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False, patch_size=1, patch_size_t=1, encoder_causal=True,
        decoder_causal=False,
    )
    torch.manual_seed(seed)
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=vocab_size, d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    ))
    cls = LTXImageToVideoPipeline if image_to_video else LTXPipeline
    pipe: Any = cls(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(),
                    text_encoder=text_encoder, tokenizer=tokenizer)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def _tiny_clip_config(tokenizer: Any, vocab_size: int) -> Any:
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config={"bos_token_id": tokenizer.bos_token_id,
                     "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id, "vocab_size": vocab_size,
                     "hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2,
                     "num_hidden_layers": 2, "max_position_embeddings": _MAX_TOKENS},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 16,
                       "intermediate_size": 32, "num_attention_heads": 2,
                       "num_hidden_layers": 2},
        projection_dim=8,
    )


def _tiny_image_processor() -> Any:
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def make_tiny_clip(path: Path, *, seed: int = 0) -> Path:
    """Build a tiny random ``CLIPModel`` (32 px pictures, 8-d embeddings) with its tokenizer
    and image processor, saved as safetensors in ``path``; returns ``path``."""
    import torch
    from transformers import CLIPModel, CLIPProcessor

    path = Path(path)
    tokenizer, vocab_size = _tiny_tokenizer()
    torch.manual_seed(seed)
    CLIPModel(_tiny_clip_config(tokenizer, vocab_size)).save_pretrained(
        path, safe_serialization=True)
    CLIPProcessor(image_processor=_tiny_image_processor(), tokenizer=tokenizer).save_pretrained(
        path)
    return path


def make_tiny_safety_checker(path: Path, *, unsafe: list[Any] | None = None,
                             seed: int = 0) -> Path:
    """Build a tiny random ``StableDiffusionSafetyChecker`` saved in ``path``; returns it.

    Its concepts are set to the embeddings of the ``unsafe`` pictures (PIL images) with a
    threshold of 0.9, so those pictures and close copies score above 0 (unsafe) while
    unrelated ones score below."""
    path = Path(path)
    checker, processor = _tiny_safety_checker(unsafe or [], seed)
    checker.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    return path


def _tiny_safety_checker(unsafe: list[Any], seed: int) -> tuple[Any, Any]:
    """The checker of :func:`make_tiny_safety_checker` and its image processor, not saved."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import (
        StableDiffusionSafetyChecker,
    )

    tokenizer, vocab_size = _tiny_tokenizer()
    torch.manual_seed(seed)
    checker = StableDiffusionSafetyChecker(_tiny_clip_config(tokenizer, vocab_size)).eval()
    processor = _tiny_image_processor()
    with torch.no_grad():
        checker.special_care_embeds.copy_(torch.randn_like(checker.special_care_embeds))
        checker.concept_embeds.copy_(torch.randn_like(checker.concept_embeds))
        if unsafe:
            pixels = processor(images=unsafe, return_tensors="pt")["pixel_values"]
            embeds = checker.visual_projection(checker.vision_model(pixels)[1])
            checker.concept_embeds[: len(unsafe)] = embeds
        checker.concept_embeds_weights.fill_(0.9)
        checker.special_care_embeds_weights.fill_(1.0)
    return checker, processor
