"""The exception hierarchy of FlexGrid.

Every error FlexGrid raises on purpose derives from `FlexGridError`. Errors about input name
the offending field (and, where there is one, the order) and the reason, so that a user can
fix the input without reading code.
"""

from __future__ import annotations


class FlexGridError(Exception):
    """Root of all FlexGrid errors."""


class InputError(FlexGridError, ValueError):
    """Bad input: names the field, the reason and, where known, the order it belongs to."""

    def __init__(self, field: str, reason: str, *, order_id: str | None = None) -> None:
        self.field = field
        self.reason = reason
        self.order_id = order_id
        where = f"order {order_id}: " if order_id else ""
        super().__init__(f"{where}{field}: {reason}")


class SignatureError(InputError):
    """A signature does not verify or does not belong to the claimed signer."""


class SolverError(FlexGridError):
    """A solver finished without an optimal solution; the status is named."""

    def __init__(self, status: str, detail: str = "") -> None:
        self.status = status
        super().__init__(f"solver status {status!r}" + (f": {detail}" if detail else ""))


class ChainError(FlexGridError):
    """The chain could not be reached, a transaction reverted, or a node failed to start."""


class ContractRevert(ChainError):
    """A contract call reverted; `error_name` is the decoded custom error, if any."""

    def __init__(self, error_name: str, args: tuple[object, ...] = (), message: str = "") -> None:
        self.error_name = error_name
        self.args_ = args
        super().__init__(message or f"reverted with {error_name}{args!r}")
