"""Post-processing: crops that keep the subject, logo, captions and encoding, for images
(Pillow) and video (ffmpeg).

The pipeline calls :func:`compose` once per rendered picture and placement, then
:func:`encode_image`; see :mod:`adgen.post.image` for the layout rules. Video creatives go
through :func:`still_to_video` (see :mod:`adgen.post.video`).
"""

from adgen.post.encode import encode_image
from adgen.post.image import (
    Caption,
    Composed,
    LogoStyle,
    check_captions_drawable,
    compose,
    load_brand_image,
)
from adgen.post.video import VideoResult, VideoSpec, frames_to_video, probe_video, still_to_video

__all__ = [
    "Caption",
    "Composed",
    "LogoStyle",
    "VideoResult",
    "VideoSpec",
    "check_captions_drawable",
    "compose",
    "encode_image",
    "frames_to_video",
    "load_brand_image",
    "probe_video",
    "still_to_video",
]
