"""The devices a command asks for (``--device``, ``--amp``): checked before anything loads."""
from .errors import UserError


def checked_device(device: str) -> str:
    """``device`` if torch can run there: ``cpu``, or ``cuda[:N]`` with that GPU present.

    Args:
        device (str): What ``--device`` says.

    Returns:
        str: ``device``.

    Raises:
        UserError: Not a device, another kind than cpu/cuda, or a GPU this
            machine does not have.
    """
    import torch
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f'--device {device!r} is not a device; use cpu or cuda[:N]') from None
    if parsed.type == 'cpu':
        return device
    if parsed.type != 'cuda':
        raise UserError(f'--device {device}: kt runs models on cpu or cuda[:N]')
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not count:
        raise UserError(f'--device {device} needs a GPU, and torch sees none on this machine; '
                        'use --device cpu')
    if parsed.index is not None and parsed.index >= count:
        raise UserError(f'--device {device}: this machine has {count} GPU(s), '
                        f'cuda:0 to cuda:{count - 1}')
    return device


def require_gpu(option: str) -> None:
    """Refuse ``option`` (mixed precision) on a machine without CUDA."""
    import torch
    if not torch.cuda.is_available():
        raise UserError(f'{option} needs a GPU (mixed precision runs on CUDA); drop it here')
