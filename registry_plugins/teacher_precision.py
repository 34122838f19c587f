"""The numeric precision frozen teachers run in, and the context they run under.

A teacher only hands its student normalised attention maps (and, for distillation, logits),
so it can run its forward in bfloat16 or float16 on a GPU while the student trains in
float32: the maps are normalised per image, and the rounding of the features changes them
little (``tests/test_models/test_teacher_precision.py`` measures how little). Its outputs
are returned as float32 tensors that autograd may save.
"""
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator, Optional

import torch

TEACHER_PRECISIONS = ('auto', 'fp32', 'fp16', 'bf16')
_DTYPES = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}
_NAMES = {None: 'fp32', torch.float16: 'fp16', torch.bfloat16: 'bf16'}


def check_teacher_precision(precision: str) -> str:
    """Return ``precision`` if it is one of :data:`TEACHER_PRECISIONS`.

    Raises:
        ValueError: It is not.
    """
    if precision not in TEACHER_PRECISIONS:
        raise ValueError(f'teacher_precision must be one of {TEACHER_PRECISIONS}, '
                         f'got {precision!r}')
    return precision


@lru_cache(maxsize=None)
def _cuda_low_precision(device_index: int) -> torch.dtype:
    major, _ = torch.cuda.get_device_capability(device_index)
    # Native bfloat16 arithmetic arrived with Ampere (compute capability 8.0); earlier GPUs
    # only emulate it, slower than float32, and get float16.
    return torch.bfloat16 if major >= 8 else torch.float16


def teacher_autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The dtype teachers autocast to on ``device``; None means float32 (no autocast).

    ``'auto'`` is bfloat16 on a GPU that computes it natively (Ampere and later),
    float16 on an older GPU, and float32 on any other device (the CPU: its
    results stay exactly those of a float32 run).

    Args:
        precision (str): One of :data:`TEACHER_PRECISIONS`.
        device (torch.device): Where the teachers run.

    Returns:
        torch.dtype, optional: ``torch.bfloat16``, ``torch.float16`` or None.
    """
    check_teacher_precision(precision)
    if precision != 'auto':
        return _DTYPES[precision]
    if device.type != 'cuda':
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _cuda_low_precision(index)


def teacher_precision_name(precision: str, device: torch.device) -> str:
    """``'fp32'``, ``'fp16'`` or ``'bf16'``: what ``precision`` means on ``device``."""
    return _NAMES[teacher_autocast_dtype(precision, device)]


@contextmanager
def frozen_teacher_context(precision: str, device: torch.device) -> Iterator[None]:
    """Run frozen teachers: inference mode, autocast to ``precision`` on ``device``.

    With float32 autocast is switched off, also inside a student's mixed-precision
    step. Tensors made here are inference tensors: pass what leaves the context
    through :func:`autograd_ready` before autograd sees it.

    Args:
        precision (str): One of :data:`TEACHER_PRECISIONS`.
        device (torch.device): Where the teachers run.
    """
    dtype = teacher_autocast_dtype(precision, device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype,
                                                enabled=dtype is not None):
        yield


def autograd_ready(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of a teacher's output, made outside inference mode, at least float32.

    Autograd cannot save inference tensors for backward; a copy made outside
    inference mode is an ordinary tensor. Half precision is cast to float32,
    float32 and float64 are kept.
    """
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32), copy=True)
