"""Benchmark: the data fingerprint of the demo and of a CUB-sized dataset, cold and cached.

    python tools/benchmark_fingerprint.py [--images 11788] [--width 500] [--height 375]

Writes kt's demo dataset (``kt data demo``'s defaults) and a dataset in CUB-200-2011's
layout with ``--images`` JPEGs of random smooth content (CUB has 11,788 of about 500x375;
see tools/benchmark_data_check.py), each into a temporary folder, then times
``dataset_fingerprint`` on each three times with an empty cache: cold (every image is
hashed), cached (the images are only listed and stat'ed), and after one image is replaced
(hashed again, with a new fingerprint). The files were just written, so they are read from
the page cache; from a cold disk, hashing runs at the disk's read speed.
"""
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, '') and (Path(__file__).resolve().parents[1] / 'ktcli').is_dir():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark_data_check import image_set_arguments, write_jpegs  # noqa: E402  (tools/)

from ktcli.data.fingerprint import dataset_fingerprint  # noqa: E402
from ktcli.data.image_verification import POOL_THRESHOLD, worker_count  # noqa: E402


def write_cub_layout(root: Path, count: int, size: tuple) -> None:
    """``count`` JPEGs in CUB's layout: 60 per class folder, every other one a test image."""
    paths = write_jpegs(root / 'images', count, size)
    names = [path.relative_to(root / 'images').as_posix() for path in paths]
    lines = {
        'images.txt': [f'{k} {name}' for k, name in enumerate(names, start=1)],
        'image_class_labels.txt': [f'{k} {int(name[:3]) + 1}'
                                   for k, name in enumerate(names, start=1)],
        'train_test_split.txt': [f'{k} {k % 2}' for k in range(1, count + 1)],
        'classes.txt': [f'{k} {k:03d}.class' for k in range(1, 201)],
    }
    for name, content in lines.items():
        (root / name).write_text('\n'.join(content) + '\n')


def measure(name: str, root: Path) -> None:
    """Print the three timings of one dataset and its size."""
    images = sorted(root.rglob('*.jpg'))
    megabytes = sum(path.stat().st_size for path in images) / 1e6
    threads = worker_count() if len(images) >= POOL_THRESHOLD else 1
    print(f'{name}: {len(images)} images, {megabytes:.1f} MB, hashed with {threads} thread(s)')
    timings = []
    for label in ('cold (hashes every image)', 'cached (stats every image)',
                  'one image replaced (hashes again)'):
        if label.startswith('one'):
            victim, other = images[:2]
            victim.write_bytes(other.read_bytes())
        start = time.perf_counter()
        fingerprint = dataset_fingerprint(name, root)
        seconds = time.perf_counter() - start
        timings.append(seconds)
        print(f'  {label}: {seconds:.2f} s, fingerprint {fingerprint.id}')
    print(f'  cold throughput: {len(images) / timings[0]:.0f} images/s, '
          f'{megabytes / timings[0]:.0f} MB/s')


def main() -> None:
    args = image_set_arguments(__doc__.splitlines()[0])
    from ktcli.data.demo import make_demo_dataset
    with tempfile.TemporaryDirectory(prefix='kt_fingerprint_') as folder:
        os.environ['KT_CACHE_DIR'] = str(Path(folder) / 'cache')
        start = time.perf_counter()
        demo = make_demo_dataset(Path(folder) / 'kt_demo')
        cub = Path(folder) / 'CUB_200_2011'
        write_cub_layout(cub, args.images, (args.width, args.height))
        print(f'wrote the demo and {args.images} JPEGs of {args.width}x{args.height} in '
              f'{time.perf_counter() - start:.1f} s')
        import mmpretrain.datasets  # noqa: F401  (loaded once, outside the timings)
        measure('demo', demo)
        measure('cub', cub)


if __name__ == '__main__':
    main()
