"""A validation split carved from a dataset's training split: stratified, and the same for the
same data wherever it is.

``--val-split`` takes ``none`` (train on the whole training split, as the paper does),
a fraction in (0, 1) of each class, a whole number K of images per class, or ``official``
where the dataset ships one (FGVC-Aircraft: its ``images_variant_val.txt`` out of
``trainval``, so kt trains on its ``train`` list). The split is a list of indices into the
training split as mmpretrain reads it, so every dataset kt reads is split the same way and
the test split is never touched. The images of each class are shuffled by a generator
seeded from the training split's fingerprint and the class, so the same data gives the
same split on any machine, and one changed training image gives a new one (and a new
stage digest, since the indices are part of the training dataset a digest covers).
"""
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import UserError

NONE = 'none'
OFFICIAL = 'official'
# The datasets that ship a validation list, and the file that lists it.
OFFICIAL_VAL_LISTS = {'air': 'data/images_variant_val.txt'}


@dataclass(frozen=True)
class SplitChoice:
    """What ``--val-split`` asked for: exactly one of ``fraction``, ``per_class`` and
    ``official``, or none of them (no validation split)."""

    fraction: Optional[float] = None
    per_class: Optional[int] = None
    official: bool = False

    @property
    def none(self) -> bool:
        """No validation split: train on all of the training split."""
        return self.fraction is None and self.per_class is None and not self.official

    def text(self) -> str:
        """The canonical option text (``none``, ``0.2``, ``5``, ``official``)."""
        if self.official:
            return OFFICIAL
        if self.fraction is not None:
            return f'{self.fraction:g}'
        return NONE if self.per_class is None else str(self.per_class)


def parse_val_split(text: str) -> SplitChoice:
    """Read ``--val-split``: ``none``, ``official``, a fraction in (0, 1) or a whole number
    of images per class (1 or more).

    Raises:
        UserError: Anything else, in one line.
    """
    value = str(text).strip().lower()
    if value in (NONE, OFFICIAL):
        return SplitChoice(official=value == OFFICIAL)
    if value.isdigit():
        if int(value) >= 1:
            return SplitChoice(per_class=int(value))
    else:
        try:
            fraction = float(value)
        except ValueError:
            fraction = math.nan
        if 0 < fraction < 1:
            return SplitChoice(fraction=fraction)
    raise UserError(f'--val-split takes none, official, a fraction between 0 and 1 (0.2) or '
                    f'a number of images per class (5), got {text!r}')


def is_val_split(value: object) -> bool:
    """Whether a value read from a work dir is a canonical ``--val-split`` text."""
    if not isinstance(value, str) or len(value) > 32:
        return False
    try:
        return parse_val_split(value).text() == value
    except UserError:
        return False


def stratified_split(labels: Sequence[int], choice: SplitChoice, seed_text: str,
                     class_names: Sequence[str] = ()) -> Tuple[List[int], List[int]]:
    """Indices of the training and validation images, each class split on its own.

    A fraction takes ``round(fraction * n)`` of a class's n images, at least one; K per
    class takes K. Either way a class keeps at least one training image.

    Args:
        labels (Sequence[int]): The class of each training image, in the
            split's order.
        choice (SplitChoice): A fraction or a number per class.
        seed_text (str): What the shuffle is seeded from (the training
            split's fingerprint).
        class_names (Sequence[str]): The class names, by label, for the
            message. Defaults to () (the label is named).

    Returns:
        tuple[list[int], list[int]]: Training and validation indices, each
        sorted.

    Raises:
        UserError: A class too small to give its share and keep one image
            for training, naming it.
    """
    by_class: Dict[int, List[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    validation = []
    for label in sorted(by_class):
        members = by_class[label]
        wanted = (choice.per_class if choice.per_class is not None
                  else max(1, round(choice.fraction * len(members))))
        if wanted >= len(members):
            name = class_names[label] if label < len(class_names) else label
            raise UserError(f'class {name} has {len(members)} training image'
                            f'{"s" if len(members) != 1 else ""}, too few to validate on '
                            f'{wanted} and train on the rest; pick a smaller --val-split')
        validation.extend(_shuffled(members, f'{seed_text}:{label}')[:wanted])
    held_out = set(validation)
    return ([index for index in range(len(labels)) if index not in held_out],
            sorted(validation))


def _shuffled(members: List[int], seed_text: str) -> List[int]:
    seed = int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:8], 'little')
    return [members[i] for i in np.random.default_rng(seed).permutation(len(members))]


def official_split(image_names: Sequence[str], val_names: Sequence[str],
                   list_name: str) -> Tuple[List[int], List[int]]:
    """Training and validation indices of a dataset's own validation list.

    Args:
        image_names (Sequence[str]): The training split's image names (file
            names without folder or suffix), in order.
        val_names (Sequence[str]): The names the validation list holds.
        list_name (str): That list's file, for messages.

    Raises:
        UserError: A listed image that is not in the training split, or a
            list that leaves nothing to train on.
    """
    val = set(val_names)
    missing = val - set(image_names)
    if missing:
        raise UserError(f'{list_name} lists {len(missing)} image(s) that are not in the '
                        f'training split (first: {sorted(missing)[0]}); restore the dataset\'s '
                        'list files')
    validation = [index for index, name in enumerate(image_names) if name in val]
    if not validation or len(validation) == len(image_names):
        raise UserError(f'{list_name} leaves no image to validate or none to train on; '
                        'restore the dataset\'s list files')
    held_out = set(validation)
    return [i for i in range(len(image_names)) if i not in held_out], validation


def read_name_list(path: Path) -> List[str]:
    """The image names of an FGVC-Aircraft list file (``<image> <variant>`` per line)."""
    from ..reading import read_capped
    try:
        text = read_capped(path, 16 << 20).decode()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f'cannot read {path} ({error}); restore the dataset\'s list files or '
                        'pick --val-split 0.2') from None
    return [line.split(maxsplit=1)[0] for line in text.splitlines() if line.strip()]


def split_training_set(dataset: str, root: Path, choice: SplitChoice,
                       seed_text: str) -> Tuple[List[int], List[int]]:
    """The training and validation indices of a dataset root's training split.

    Args:
        dataset (str): cub, car, air, demo or custom.
        root (Path): Its root (checked).
        choice (SplitChoice): Not ``none``.
        seed_text (str): The training split's fingerprint.

    Raises:
        UserError: ``official`` for a dataset without its own validation list,
            or a split that cannot be made (see :func:`stratified_split`).
    """
    from .check import split_samples
    if choice.official and dataset not in OFFICIAL_VAL_LISTS:
        raise UserError(f'--val-split official: {dataset} has no official validation split; '
                        'pick a fraction (0.2) or a number of images per class (5)')
    training = next(iter(split_samples(dataset, Path(root))))
    samples = training.samples
    if not choice.official:
        return stratified_split([label for _, label in samples], choice, seed_text,
                                training.classes)
    list_file = Path(root) / OFFICIAL_VAL_LISTS[dataset]
    return official_split([path.stem for path, _ in samples], read_name_list(list_file),
                          str(list_file))
