"""The one root of Allied's errors.

Every failure a user can cause is an :class:`AlliedError` subclass that carries its facts as
attributes, so the command line prints one clear line, the HTTP layer picks a status from the
class, and tests assert on data instead of message text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class AlliedError(Exception):
    """Root of every error Allied raises on purpose."""

    #: HTTP status the TAXII layer answers with for this kind of error.
    http_status: int = 400
    #: whether the command line prints every line of :meth:`details` without --verbose (the
    #: error is a list of problems in the user's input, all of which need fixing)
    lists_problems: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> list[str]:
        """Extra lines shown with ``--verbose``; empty by default."""
        return []


class ConfigError(AlliedError):
    """The node configuration, or an argument naming part of it, is wrong."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class NodeNotFound(ConfigError):
    """The directory given as a node is not an initialised Allied node."""

    http_status = 500


class NotFound(AlliedError):
    """An object, partner or label that was asked for does not exist."""

    http_status = 404


class Conflict(AlliedError):
    """Creating something that already exists under the same name, or a write that would
    contradict what is stored (``object_id`` names the object, when there is one)."""

    http_status = 409

    def __init__(
        self,
        message: str,
        *,
        object_id: str | None = None,
        objects: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.object_id = object_id
        #: every contradicting object of the batch found in the same pass, id -> reason
        #: (``object_id`` and ``message`` are the first of them)
        self.objects: dict[str, str] = dict(objects or {})
        if object_id is not None:
            self.objects.setdefault(object_id, message)


@dataclass(frozen=True)
class Problem:
    """One reason an input object was refused, located precisely enough to fix it.

    ``index`` is the position of the object in its file (0-based), ``line`` the line it started
    on when known, ``path`` a JSON path inside the object such as ``objects[3].pattern`` or
    ``external_references[0].source_name``.
    """

    index: int | None
    object_id: str | None
    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.index is not None:
            where.append(f"object {self.index}")
        if self.object_id:
            where.append(self.object_id)
        location = ", ".join(where) if where else "input"
        path = f" at {self.path}" if self.path else ""
        return f"{location}{path}: {self.reason}"


class ValidationError(AlliedError):
    """Input that is not valid STIX 2.1; ``problems`` lists every reason found."""

    http_status = 422
    lists_problems = True

    def __init__(self, problems: list[Problem], *, source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        first = str(problems[0]) if problems else "invalid input"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}{first}{more}")

    def details(self) -> list[str]:
        return [str(p) for p in self.problems]


class InputFormatError(AlliedError):
    """The bytes are not a STIX bundle or JSON lines at all (syntax, encoding, envelope)."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        where = ""
        if source is not None:
            where = source
            if line is not None:
                where += f":{line}"
                if column is not None:
                    where += f":{column}"
            where += ": "
        super().__init__(f"{where}{message}")
        self.source = source
        self.line = line
        self.column = column


class PatternError(AlliedError):
    """A STIX pattern that does not parse; ``position`` is the 0-based offset of the fault."""

    def __init__(self, reason: str, *, pattern: str, position: int) -> None:
        super().__init__(f"{reason} at position {position}")
        self.reason = reason
        self.pattern = pattern
        self.position = position


class AuthError(AlliedError):
    """A credential that is missing, wrong or revoked."""

    http_status = 401


class LimitExceeded(AlliedError):
    """A request that would pass a configured cap (blind-matching evaluations)."""

    http_status = 429
