"""Write kt's built-in demo dataset (20 synthetic fine-grained species, CUB's layout).

Usage: python tools/make_demo_data.py --out DIR [--seed 0] [--img-size 80]
    [--train-per-class 60] [--test-per-class 200] [--occlusion-prob 0.25]
"""
import argparse
import importlib.util
import sys
import time
from pathlib import Path

if importlib.util.find_spec('ktcli') is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ktcli.data.demo import DEMO_CLASSES, make_demo_dataset  # noqa: E402
from ktcli.data.specs import DEMO_TEST_PER_CLASS, DEMO_TRAIN_PER_CLASS  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command-line arguments.

    Args:
        argv: The arguments; ``sys.argv[1:]`` when None.

    Returns:
        The parsed arguments.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', required=True, type=Path,
                        help='the dataset directory (new, empty or an earlier demo dataset)')
    parser.add_argument('--seed', type=int, default=0, help='the random seed')
    parser.add_argument('--img-size', type=int, default=80,
                        help='the side of the square images, in pixels')
    parser.add_argument('--train-per-class', type=int, default=DEMO_TRAIN_PER_CLASS,
                        help='training images per species')
    parser.add_argument('--test-per-class', type=int, default=DEMO_TEST_PER_CLASS,
                        help='test images per species')
    parser.add_argument('--occlusion-prob', type=float, default=0.25,
                        help='share of images with one body region covered')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Write the demo dataset and print its path, image count and time taken.

    Exits with a message (status 1) if the directory or an argument is unusable.

    Args:
        argv: The arguments; ``sys.argv[1:]`` when None.
    """
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        out_dir = make_demo_dataset(args.out, seed=args.seed, img_size=args.img_size,
                                    train_per_class=args.train_per_class,
                                    test_per_class=args.test_per_class,
                                    occlusion_prob=args.occlusion_prob)
    except (FileExistsError, ValueError) as error:
        sys.exit(f'make_demo_data: {error}')
    count = len(DEMO_CLASSES) * (args.train_per_class + args.test_per_class)
    print(f'{out_dir}: {count} images in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    main()
