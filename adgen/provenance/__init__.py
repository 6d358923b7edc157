"""Provenance: how a finished ad says it was made, and how that is checked.

- :mod:`~adgen.provenance.metadata`: the IPTC ``DigitalSourceType`` and adgen's fields in XMP,
  inserted into JPEG, PNG, WebP and MP4 without touching the pixels;
- :mod:`~adgen.provenance.watermark`: an invisible watermark in the pixels, which survives the
  re-encoding and resizing that strip metadata;
- :mod:`~adgen.provenance.c2pa`: a signed C2PA manifest, with the watermark as its soft binding;
- :mod:`~adgen.provenance.verify`: everything a file claims, read back (``adgen verify``).

This module imports none of them: they sit on different floors (docs/architecture.md).
"""
