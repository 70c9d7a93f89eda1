"""Typed errors raised by the library.

Library code raises these with a message a user can act on; only the CLI turns them into a
one-line message and an exit code (docs/architecture.md).
"""


class InductionLabError(Exception):
    """Base class of every error inductionlab raises on purpose."""


class ConfigError(InductionLabError, ValueError):
    """A config value (or an override, or a preset name) is invalid; the message names the field."""


class MemoryEstimateError(ConfigError):
    """A run's estimated memory exceeds what its device has (or the limit given); names the field to change."""


class RunDirError(InductionLabError):
    """A run directory is missing, unreadable, or belongs to a different config."""


class RunInUseError(RunDirError):
    """Another process is training in this run directory (runs.hold_run)."""


class CheckpointError(InductionLabError):
    """A checkpoint file is missing or corrupt; the message names the file."""


class SweepError(InductionLabError):
    """A run of a sweep failed, or a sweep backend cannot be reached."""


class ShapeError(InductionLabError, ValueError):
    """Tensors handed to a library function do not fit together (shapes, lengths, alignment)."""


class NumericalError(InductionLabError, ArithmeticError):
    """A computation produced something unusable: a non-finite value, a table that does not reproduce its input."""


class DivergenceError(NumericalError):
    """Training produced a non-finite loss or weight; the run stopped there and kept its last finite checkpoint."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step
