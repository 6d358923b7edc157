"""Image post-processing: crops that keep the subject, logo, captions and encoding.

The pipeline calls :func:`compose` once per rendered picture and placement, then
:func:`encode_image`; see :mod:`adgen.post.image` for the layout rules.
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

__all__ = [
    "Caption",
    "Composed",
    "LogoStyle",
    "check_captions_drawable",
    "compose",
    "encode_image",
    "load_brand_image",
]
