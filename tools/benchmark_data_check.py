"""Benchmark: verifying every image of a CUB-sized dataset, cold and cached.

    python tools/benchmark_data_check.py [--images 11788] [--width 500] [--height 375]

Writes ``--images`` JPEGs (CUB-200-2011 has 11,788 of about 500x375) with
random smooth content into a temporary folder, then times
``unreadable_images`` on them twice with an empty verdict cache in that
folder: the first call decodes every image in the worker pool, the second
finds the cached verdict and decodes nothing. The files were just written,
so both calls read them from the page cache.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, '') and (Path(__file__).resolve().parents[1] / 'ktcli').is_dir():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ktcli.data.image_verification import (  # noqa: E402
    POOL_THRESHOLD,
    unreadable_images,
    worker_count,
)


def write_jpegs(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """Write ``count`` JPEGs of ``size``: upscaled random colour blobs plus noise."""
    rng = np.random.default_rng(0)
    width, height = size
    paths = []
    for index in range(count):
        blobs = rng.integers(0, 256, (height // 25, width // 25, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(blobs).resize(size, Image.BICUBIC), dtype=np.int16)
        image += rng.integers(-12, 13, image.shape, dtype=np.int16)
        path = folder / f'{index // 60:03d}' / f'image_{index:05d}.jpg'
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def timed(paths: list[Path]) -> tuple[float, int]:
    """Seconds one verification takes, and the unreadable images it found."""
    start = time.perf_counter()
    unreadable = unreadable_images(paths)
    return time.perf_counter() - start, len(unreadable)


def image_set_arguments(description: str) -> argparse.Namespace:
    """The command line of a benchmark on a CUB-sized image set: --images, --width, --height."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--images', type=int, default=11788, help='How many JPEGs to write.')
    parser.add_argument('--width', type=int, default=500, help='Image width in pixels.')
    parser.add_argument('--height', type=int, default=375, help='Image height in pixels.')
    return parser.parse_args()


def main() -> None:
    args = image_set_arguments(__doc__.splitlines()[0])
    with tempfile.TemporaryDirectory(prefix='kt_data_check_') as folder:
        os.environ['KT_CACHE_DIR'] = str(Path(folder) / 'cache')
        start = time.perf_counter()
        paths = write_jpegs(Path(folder) / 'images', args.images, (args.width, args.height))
        megabytes = sum(path.stat().st_size for path in paths) / 1e6
        print(f'wrote {len(paths)} JPEGs of {args.width}x{args.height} ({megabytes:.0f} MB) '
              f'in {time.perf_counter() - start:.1f} s')
        workers = worker_count() if len(paths) >= POOL_THRESHOLD else 1
        print(f'verifying with {workers} decoding process(es)')
        for label in ('cold (decodes every image)', 'cached (decodes nothing)'):
            seconds, unreadable = timed(paths)
            print(f'{label}: {seconds:.2f} s, {unreadable} unreadable')


if __name__ == '__main__':
    main()
