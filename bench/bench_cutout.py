"""Cut-out of a very large catalog photo: time and peak memory.

A 6300x6300 photo (just under the default 40-megapixel limit) of a product on white, as PNG and
as JPEG, is cut out by ``ProductImages.cutout`` (decoded reduced to ``MAX_SIDE``, then matted).
Baseline, in the same process and on the same PNG: the white matte on the photo at full size,
which is what the cut-out did before photos were reduced. Each case runs in a child process so
its peak memory (max RSS) is its own. Prints figures and ratios; asserts nothing about time.

    .venv/bin/python bench/bench_cutout.py [--side 6300]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

Result = tuple[float, float, tuple[int, int]]
"""Seconds, peak memory in MB, and the size of what was made."""


def _photo(folder: Path, side: int, kind: str) -> Path:
    image = Image.new("RGB", (side, side), (252, 252, 252))
    ImageDraw.Draw(image).ellipse((side // 4, side // 4, side * 3 // 4, side * 3 // 4),
                                  fill=(200, 30, 40))
    path = folder / f"photo.{kind.lower()}"
    image.save(path, kind)
    return path


def _cutout(path: Path, queue: multiprocessing.Queue[Result]) -> None:
    from adgen.catalog.feeds import Product
    from adgen.catalog.images import ProductImages

    start = time.perf_counter()
    made = ProductImages(path.parent / "cache", path.parent).cutout(
        Product(id="p", title="Lamp", image_link=path.name))
    size = Image.open(made.path).size
    queue.put((time.perf_counter() - start, _peak_mb(), size))


def _full_matte(path: Path, queue: multiprocessing.Queue[Result]) -> None:
    from adgen.post.matte import white_matte

    start = time.perf_counter()
    with Image.open(path) as image:
        cut, _ = white_matte(image.convert("RGB"))
    queue.put((time.perf_counter() - start, _peak_mb(), cut.size))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(target: Callable[..., None], path: Path) -> Result:
    queue: multiprocessing.Queue[Result] = multiprocessing.Queue()
    child = multiprocessing.get_context("fork").Process(target=target, args=(path, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=6300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        png, jpeg = _photo(folder, args.side, "PNG"), _photo(folder, args.side, "JPEG")
        base_s, base_mb, base_size = _measure(_full_matte, png)
        print(f"baseline: full-size white matte, {base_size[0]}x{base_size[1]}: "
              f"{base_s:.1f} s, peak {base_mb:.0f} MB")
        for name, path in (("PNG", png), ("JPEG", jpeg)):
            (folder / "cache").mkdir(exist_ok=True)
            took, peak, size = _measure(_cutout, path)
            print(f"cutout {name} {args.side}x{args.side} -> {size[0]}x{size[1]}: {took:.1f} s "
                  f"({took / base_s:.2f}x the baseline), peak {peak:.0f} MB "
                  f"({peak / base_mb:.2f}x)")


if __name__ == "__main__":
    main()
