"""Checks that need a model: prompt alignment (CLIP), unsafe content (a safety classifier) and
text in the scene (an OCR text detector).

Each is a callable class that loads its model once in ``__init__`` and scores a batch of
pictures in one call, on the device it is given. Only safetensors weights are loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from adgen.errors import RenderError


def _load(cls: Any, model: str, what: str, **kwargs: Any) -> Any:
    try:
        return cls.from_pretrained(model, **kwargs)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RenderError(
            f"quality gate: cannot load the {what} model {model!r} ({first}); give a Hugging "
            f"Face Hub id or a folder saved with save_pretrained, with safetensors weights "
            f"(set HF_HUB_OFFLINE=0 to download it once), or turn the check off in the "
            f"campaign's quality section") from None


class AlignmentScorer:
    """How well a picture matches its prompt: the cosine similarity of their CLIP embeddings
    (-1 to 1; about 0.3 for a good match with ``openai/clip-vit-large-patch14``, under 0.15 for
    an unrelated picture). ``model`` is a ``transformers`` CLIP id or folder (model, tokenizer
    and image processor)."""

    def __init__(self, model: str, *, device: str = "cpu", dtype: Any = None) -> None:
        import torch
        from transformers import CLIPModel, CLIPProcessor

        self.device = device
        self.dtype = dtype or torch.float32
        self.model = _load(CLIPModel, model, "CLIP", use_safetensors=True).to(
            device=device, dtype=self.dtype).eval()
        self.processor = _load(CLIPProcessor, model, "CLIP processor")

    def __call__(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> list[float]:
        import torch

        if not images:
            return []
        inputs = self.processor(text=list(prompts), images=list(images), return_tensors="pt",
                                padding=True, truncation=True)
        with torch.inference_mode():
            image = self.model.get_image_features(
                pixel_values=inputs["pixel_values"].to(self.device, self.dtype))
            text = self.model.get_text_features(
                input_ids=inputs["input_ids"].to(self.device),
                attention_mask=inputs["attention_mask"].to(self.device))
        image = _unwrap(image)
        text = _unwrap(text)
        similarity = torch.nn.functional.cosine_similarity(image.float(), text.float(), dim=-1)
        return [round(float(s), 4) for s in similarity.cpu()]


def _unwrap(features: Any) -> Any:
    """Projected features (newer transformers may return a model output holding them)."""
    return features if hasattr(features, "float") else features.pooler_output


class SafetyScorer:
    """Unsafe content, scored as diffusers' ``StableDiffusionSafetyChecker`` does: the largest
    margin by which the picture's CLIP embedding comes closer to one of its concept embeddings
    than that concept's threshold. Above 0 the checker calls the picture unsafe."""

    def __init__(self, model: str, *, device: str = "cpu", dtype: Any = None) -> None:
        import torch
        from diffusers.pipelines.stable_diffusion.safety_checker import (
            StableDiffusionSafetyChecker,
        )
        from transformers import CLIPImageProcessor

        self.device = device
        self.dtype = dtype or torch.float32
        self.model = _load(StableDiffusionSafetyChecker, model, "safety checker",
                           use_safetensors=True).to(device=device, dtype=self.dtype).eval()
        self.processor = _load(CLIPImageProcessor, model, "safety checker's image processor")

    def __call__(self, images: Sequence[Image.Image]) -> list[float]:
        import torch

        if not images:
            return []
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        model = self.model
        with torch.inference_mode():
            pooled = model.vision_model(pixels.to(self.device, self.dtype))[1]
            embeds = torch.nn.functional.normalize(model.visual_projection(pooled).float(), dim=-1)
            special = _cosine(embeds, model.special_care_embeds) - model.special_care_embeds_weights
            concept = _cosine(embeds, model.concept_embeds) - model.concept_embeds_weights
        # a picture close to a "special care" concept is judged more strictly (diffusers: +0.01)
        adjust = (special > 0).any(dim=1, keepdim=True).float() * 0.01
        worst = torch.maximum(special.max(dim=1).values, (concept + adjust).max(dim=1).values)
        return [round(float(s), 4) for s in worst.cpu()]


def _cosine(embeds: Any, concepts: Any) -> Any:
    import torch

    return embeds @ torch.nn.functional.normalize(concepts.float(), dim=-1).T


class TextDetector:
    """Text drawn into a generated scene, found by RapidOCR's text detector (PP-OCRv4 ONNX
    model, shipped in the ``rapidocr-onnxruntime`` wheel: it runs offline). Scores the share of
    the picture covered by text boxes (0 when there is none)."""

    def __init__(self, *, device: str = "cpu", side: int = 640) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError:
            raise RenderError(
                "quality gate: the text check needs RapidOCR; install it with "
                "`pip install rapidocr-onnxruntime`, or set quality.text to false") from None
        self.side = side
        self.engine = RapidOCR(det_limit_side_len=side, det_limit_type="max",
                               det_use_cuda=device.startswith("cuda"), print_verbose=False)

    def __call__(self, images: Sequence[Image.Image]) -> list[float]:
        return [self._area(image) for image in images]

    def _area(self, image: Image.Image) -> float:
        rgb = image.convert("RGB")
        boxes, _ = self.engine(np.asarray(rgb)[:, :, ::-1].copy(), use_det=True, use_cls=False,
                               use_rec=False)
        if not boxes:
            return 0.0
        mask = np.zeros((rgb.height, rgb.width), dtype=bool)
        for box in boxes:
            points = np.asarray(box, dtype=np.float32)
            left, top = np.floor(points.min(axis=0)).astype(int).clip(0)
            right, bottom = np.ceil(points.max(axis=0)).astype(int)
            mask[top:bottom, left:right] = True
        return round(float(mask.mean()), 5)
