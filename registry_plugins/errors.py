"""The error of a checkpoint file that cannot be used, in a module of its own.

Every plugin that reads checkpoints raises it, and ``ktcli.errors`` reports it as a user
error; this module imports nothing, so none of them import each other for it.
"""


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used (corrupt, unsafe, mismatched)."""
