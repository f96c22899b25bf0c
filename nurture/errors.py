"""The exceptions nurture raises. Every one derives from :class:`NurtureError`.

Errors carry structured attributes (file, line, field, code, recipient) so that the
CLI and the web apps can turn them into precise messages without parsing strings.
"""

from __future__ import annotations

from collections.abc import Sequence


class NurtureError(Exception):
    """Root of every error nurture raises on purpose."""


class LocatedError(NurtureError):
    """An error at a place in a file: ``file:line:col: field: message``."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return _located(self.file, self.line, self.column, self.field, self.message)


class ConfigError(LocatedError):
    """config.yaml or the environment holds a bad value.

    ``file``/``line``/``column`` point at the offending key when known.
    """


class CampaignError(LocatedError):
    """One problem in a campaign file: ``file:line:col: field: message``."""


class CampaignErrors(NurtureError):
    """Several :class:`CampaignError` found in one validation run."""

    def __init__(self, errors: Sequence[NurtureError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class TemplateError(NurtureError):
    """A template is missing, does not compile, or uses an undefined variable."""

    def __init__(
        self,
        message: str,
        *,
        template: str | None = None,
        line: int | None = None,
        variable: str | None = None,
    ) -> None:
        self.message = message
        self.template = template
        self.line = line
        self.variable = variable
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return _located(self.template, self.line, None, None, self.message)


class TokenError(NurtureError):
    """A tracking token is forged, damaged, expired or from another namespace."""


class CsvRowError(NurtureError):
    """A row of an imported CSV file is bad: ``file:row: field: message``, where ``row`` is the
    row number a spreadsheet shows (the header is row 1)."""

    def __init__(self, message: str, *, file: str, row: int, field: str | None = None) -> None:
        self.message = message
        self.file = file
        self.row = row
        self.field = field
        super().__init__(_located(file, row, None, field, message))


class NotFound(NurtureError):
    """A campaign, step, contact, task or rep that was asked for does not exist."""


class PermissionDenied(NurtureError):
    """The caller may not see or change this object (e.g. another rep's task)."""


class SendError(NurtureError):
    """Delivery of one message failed.

    ``code`` is the SMTP reply code (None for network errors and timeouts);
    ``transient`` says whether a later retry may succeed.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        recipient: str | None = None,
        transient: bool,
        enhanced: str | None = None,
    ) -> None:
        self.message = message
        self.code = code
        self.recipient = recipient
        self.transient = transient
        self.enhanced = enhanced
        super().__init__(message)

    @property
    def hard_bounce(self) -> bool:
        """A permanent failure that says the mailbox does not exist (see :func:`is_hard_bounce`)."""
        return not self.transient and is_hard_bounce(code=self.code, enhanced=self.enhanced)


def is_hard_bounce(*, code: int | None, enhanced: str | None) -> bool:
    """Whether an SMTP reply says the mailbox does not exist: the one hard-bounce rule.

    Only a permanent (5xx) reply can be one. Its RFC 3463 enhanced code decides when there is
    one (``5.1.x``, a bad destination address; ``5.7.1`` is a policy refusal, not a bounce);
    without it, the basic codes 550, 551 and 553 (RFC 5321 section 4.2.3). No reply at all
    (``code`` None: a network error or a message that could not be built) is never a bounce.
    """
    if code is None or not 500 <= code < 600:
        return False
    if enhanced:
        return enhanced.startswith("5.1.")
    return code in (550, 551, 553)


def _located(
    file: str | None, line: int | None, column: int | None, field: str | None, message: str
) -> str:
    where = ""
    if file:
        where = file
        if line:
            where += f":{line}"
            if column:
                where += f":{column}"
        where += ": "
    if field:
        where += f"{field}: "
    return where + message
