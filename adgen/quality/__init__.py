"""The quality gate: every render is scored (prompt alignment, unsafe content, text in the
scene, exposure, sharpness, near-duplicates), and one that fails is rendered again with the next
seed, up to ``quality.retries`` times; see the README's "Quality gate" section.

:class:`QualityChecker` is the plain scoring function over a batch of pictures;
:class:`GatedRenderer` wraps a renderer with it; :class:`QualityStep` is the driver's part.
"""

from adgen.quality.gate import GatedRenderer, GateSettings, QualityChecker, TwinFilter
from adgen.quality.pixels import hash_distance, phash, pixel_scores
from adgen.quality.step import QualityStep

__all__ = ["GateSettings", "GatedRenderer", "QualityChecker", "QualityStep", "TwinFilter",
           "hash_distance", "phash", "pixel_scores"]
