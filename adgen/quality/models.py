"""Checks that need a model: prompt alignment (CLIP), unsafe content (a safety classifier) and
text in the scene (an OCR text detector).

Each is a callable class that loads its model once in ``__init__`` and scores a batch of
pictures in one call, on the device it is given. Only safetensors weights are loaded.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from adgen.errors import RenderError

_CLIP = ("clip_model", "clip_model: null")
_SAFETY = ("safety_model", "safety: false")


def _load(cls: Any, model: str, what: str, keys: tuple[str, str], **kwargs: Any) -> Any:
    """``cls.from_pretrained(model)``; a model that cannot be loaded is a one-line error naming
    the campaign keys that change it (``keys``: the model's key, the check turned off)."""
    try:
        return cls.from_pretrained(model, **kwargs)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RenderError(
            f"quality gate: cannot load the {what} model {model!r} ({first}); set "
            f"quality.{keys[0]} to a Hugging Face Hub id (downloaded once with "
            f"HF_HUB_OFFLINE=0) or a folder saved with save_pretrained, with safetensors "
            f"weights, or turn the check off with quality.{keys[1]}") from None


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
        self.model = _load(CLIPModel, model, "CLIP", _CLIP, use_safetensors=True).to(
            device=device, dtype=self.dtype).eval()
        self.processor = _load(CLIPProcessor, model, "CLIP processor", _CLIP)

    def image_embeds(self, images: Sequence[Image.Image]) -> Any:
        """The pictures' projected CLIP image embeddings, one batched call."""
        import torch

        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            return _unwrap(self.model.get_image_features(
                pixel_values=pixels.to(self.device, self.dtype)))

    def __call__(self, images: Sequence[Image.Image], prompts: Sequence[str],
                 image_embeds: Any = None) -> list[float]:
        """Scores; ``image_embeds`` (from :meth:`image_embeds`) saves the image tower's run."""
        import torch

        if not images:
            return []
        image = self.image_embeds(images) if image_embeds is None else image_embeds
        inputs = self.processor.tokenizer(list(prompts), return_tensors="pt", padding=True,
                                          truncation=True)
        with torch.inference_mode():
            text = _unwrap(self.model.get_text_features(
                input_ids=inputs["input_ids"].to(self.device),
                attention_mask=inputs["attention_mask"].to(self.device)))
        similarity = torch.nn.functional.cosine_similarity(image.float(), text.float(), dim=-1)
        return [round(float(s), 4) for s in similarity.cpu()]


def _unwrap(features: Any) -> Any:
    """Projected features (newer transformers may return a model output holding them)."""
    return features if hasattr(features, "float") else features.pooler_output


class SafetyScorer:
    """Unsafe content, scored as diffusers' ``StableDiffusionSafetyChecker`` does: the largest
    margin by which the picture's CLIP embedding comes closer to one of its concept embeddings
    than that concept's threshold. Above 0 the checker calls the picture unsafe. ``model`` is
    the checker's hub id or folder (with its image processor), or a pipeline folder that ships
    one as Stable Diffusion 1.x does (``safety_checker/`` and ``feature_extractor/``)."""

    def __init__(self, model: str, *, device: str = "cpu", dtype: Any = None) -> None:
        import torch
        from diffusers.pipelines.stable_diffusion.safety_checker import (
            StableDiffusionSafetyChecker,
        )
        from transformers import CLIPImageProcessor

        self.device = device
        self.dtype = dtype or torch.float32
        pipeline = (Path(model).expanduser() / "safety_checker").is_dir()
        checker = {"subfolder": "safety_checker"} if pipeline else {}
        processor = {"subfolder": "feature_extractor"} if pipeline else {}
        self.model = _load(StableDiffusionSafetyChecker, model, "safety checker", _SAFETY,
                           use_safetensors=True, **checker).to(device=device,
                                                                dtype=self.dtype).eval()
        self.processor = _load(CLIPImageProcessor, model, "safety checker's image processor",
                               _SAFETY, **processor)

    def __call__(self, images: Sequence[Image.Image], image_embeds: Any = None) -> list[float]:
        """Scores; ``image_embeds`` are the pictures' projected embeddings when a CLIP with
        this checker's vision tower has computed them (see :func:`same_image_tower`)."""
        import torch

        if not images:
            return []
        model = self.model
        with torch.inference_mode():
            if image_embeds is None:
                pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
                pooled = model.vision_model(pixels.to(self.device, self.dtype))[1]
                image_embeds = model.visual_projection(pooled)
            embeds = torch.nn.functional.normalize(image_embeds.float(), dim=-1)
            special = _cosine(embeds, model.special_care_embeds) - model.special_care_embeds_weights
            concept = _cosine(embeds, model.concept_embeds) - model.concept_embeds_weights
        # a picture close to a "special care" concept is judged more strictly (diffusers: +0.01)
        adjust = (special > 0).any(dim=1, keepdim=True).float() * 0.01
        worst = torch.maximum(special.max(dim=1).values, (concept + adjust).max(dim=1).values)
        return [round(float(s), 4) for s in worst.cpu()]


_PREPROCESSING = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale",
                  "rescale_factor", "do_normalize", "image_mean", "image_std",
                  "do_convert_rgb")


def same_image_tower(clip: AlignmentScorer, safety: SafetyScorer) -> bool:
    """Whether the safety checker's vision tower and projection are the CLIP model's, weight
    for weight, behind the same picture preprocessing. Then the tower runs once for both
    checks. (``CompVis/stable-diffusion-safety-checker`` is thought to carry the tower of
    ``openai/clip-vit-large-patch14``; this checks it, never assumes it.)"""
    import torch

    mine = clip.processor.image_processor.to_dict()
    theirs = safety.processor.to_dict()
    if any(mine.get(key) != theirs.get(key) for key in _PREPROCESSING):
        return False
    ours, other = _tower(clip.model), _tower(safety.model)
    return ours.keys() == other.keys() and all(
        ours[k].shape == other[k].shape and torch.equal(ours[k], other[k]) for k in ours)


def _tower(model: Any) -> dict[str, Any]:
    """The weights of a CLIP-like model's vision tower and projection, by one naming (the
    tower is a ``CLIPVisionModel`` or the transformer inside one, by transformers version)."""
    weights = {f"tower.{k.removeprefix('vision_model.')}": v
               for k, v in model.vision_model.state_dict().items()}
    return weights | model.visual_projection.state_dict(prefix="projection.")


def _cosine(embeds: Any, concepts: Any) -> Any:
    import torch

    return embeds @ torch.nn.functional.normalize(concepts.float(), dim=-1).T


TEXT_SIDE = 512
"""Long side (pixels) of the copy the text detector sees: every picture is scaled to fit a
square of this side, so a batch is one tensor. Smaller is cheaper but not safe: at 384-480 px
the detector saw text in some clean renders that it finds none in at 512 (measured on the
offline renderer's pictures, 512 and 1024 px)."""


TEXT_ON_CPU = (
    "quality gate: the text check runs on the CPU beside a CUDA renderer (onnxruntime has no "
    "CUDA provider here), where it can take longer than the render; install onnxruntime-gpu "
    "in place of onnxruntime, or set quality.text: false")


class TextDetector:
    """Text drawn into a generated scene, found by RapidOCR's text detector (the PP-OCRv4 DB
    model, ONNX, shipped in the ``rapidocr-onnxruntime`` wheel: it runs offline). Only the
    detector runs, on a whole batch at once: each picture is scaled to fit a ``side`` square
    (padded), the probability map is thresholded as DB does, and each text region found is
    grown to its box. Scores the share of the picture covered by text boxes (0 when none).

    On ``cuda`` it runs with onnxruntime's CUDA provider when ``onnxruntime-gpu`` is
    installed, else on the CPU; :attr:`provider` says which."""

    threshold = 0.3
    """A pixel is text when the model's probability exceeds this (DB's ``thresh``)."""
    min_score = 0.5
    """A region is text when its mean probability exceeds this (DB's ``box_thresh``)."""
    unclip = 1.6
    """DB's maps are shrunk text boxes: a region grows by ``area * unclip / perimeter``."""

    def __init__(self, *, device: str = "cpu", side: int = TEXT_SIDE) -> None:
        try:
            import onnxruntime
            import rapidocr_onnxruntime
        except ImportError:
            raise RenderError(
                "quality gate: the text check needs RapidOCR; install it with "
                "`pip install rapidocr-onnxruntime`, or set quality.text to false") from None
        import torch

        if side % 32:
            raise ValueError(f"side must be a multiple of 32, not {side}")
        self.side = side
        self.model_path = (Path(rapidocr_onnxruntime.__file__).parent / "models"
                           / "ch_PP-OCRv4_det_infer.onnx")
        providers: list[Any] = ["CPUExecutionProvider"]
        if (device.startswith("cuda")
                and "CUDAExecutionProvider" in onnxruntime.get_available_providers()):
            index = int(device.partition(":")[2] or 0)
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the worker's CPU share
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(self.model_path), options,
                                                    providers=providers)
        self.provider = self.session.get_providers()[0]
        if device.startswith("cuda") and self.provider != "CUDAExecutionProvider":
            warnings.warn(TEXT_ON_CPU, RuntimeWarning, stacklevel=2)
        self.input = self.session.get_inputs()[0].name

    def __call__(self, images: Sequence[Image.Image]) -> list[float]:
        if not images:
            return []
        batch = np.zeros((len(images), 3, self.side, self.side), dtype=np.float32)
        shapes = []
        for i, image in enumerate(images):
            scale = self.side / max(image.size)
            width = max(1, round(image.width * scale))
            height = max(1, round(image.height * scale))
            rgb = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
            bgr = np.asarray(rgb, dtype=np.float32)[:, :, ::-1]  # PaddleOCR reads BGR
            batch[i, :, :height, :width] = (bgr / 127.5 - 1.0).transpose(2, 0, 1)
            shapes.append((height, width, image.height / height))
        probabilities = self.session.run(None, {self.input: batch})[0][:, 0]
        return [self._area(probabilities[i, :h, :w], pixel)
                for i, (h, w, pixel) in enumerate(shapes)]

    def _area(self, probability: np.ndarray, pixel: float) -> float:
        """Share of the picture inside text boxes, from its probability map (``pixel``: the
        picture's pixels per map pixel)."""
        import cv2

        # thresholded and dilated as in RapidOCR's DB post-processing
        mask = cv2.dilate((probability > self.threshold).astype(np.uint8),
                          np.ones((2, 2), np.uint8))
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if count <= 1:
            return 0.0
        sums = np.bincount(labels.ravel(), weights=probability.ravel(), minlength=count)
        scores = sums / np.maximum(stats[:, cv2.CC_STAT_AREA], 1)
        height, width = probability.shape
        boxes = np.zeros_like(mask, dtype=bool)
        for label in range(1, count):
            left, top, w, h = (int(v) for v in stats[label, :4])
            if min(w, h) < 3 or scores[label] <= self.min_score:
                continue
            grow = w * h * self.unclip / (2 * (w + h))
            if (min(w, h) + 2 * grow) * pixel <= 3:  # RapidOCR drops boxes of 3 px and less
                continue
            x0, y0 = max(0, int(left - grow)), max(0, int(top - grow))
            x1 = min(width, int(np.ceil(left + w + grow)))
            y1 = min(height, int(np.ceil(top + h + grow)))
            boxes[y0:y1, x0:x1] = True
        return round(float(boxes.mean()), 5)
