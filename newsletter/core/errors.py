"""The one error family of Slice.

Every error the library raises on purpose is a `NewsletterError`. The CLI turns
them into one line and exit status 1 (see `newsletter.cli`); `--debug` shows the
traceback. Messages say what went wrong *and* how to fix it.

Errors that are also a built-in kind inherit that built-in too, so callers that
catch `TimeoutError` or `ValueError` keep working.
"""

from __future__ import annotations

from collections.abc import Sequence


class NewsletterError(Exception):
    """Root of every error Slice raises on purpose."""


# --- settings and project -------------------------------------------------


class ConfigError(NewsletterError):
    """A setting is missing, unknown or of the wrong type."""


class ProjectExistsError(NewsletterError, FileExistsError):
    """`slice init` was pointed at a folder that already holds a project."""


# --- store ----------------------------------------------------------------


class StoreError(NewsletterError):
    """The database could not be opened or used."""


class StoreBusyError(StoreError):
    """The database stayed locked by other writers for longer than the retries wait."""

    @classmethod
    def after(cls, seconds: float) -> StoreBusyError:
        return cls(
            f"the database is busy: other programs kept it locked for {seconds:g} s "
            "(an ingest or a send, say); try again in a moment."
        )


class MigrationError(StoreError):
    """A schema migration failed; the database is left at the last good version."""


# --- sources and ingest ---------------------------------------------------


class SourceError(NewsletterError):
    """A paper source could not be read."""


class SourceTimeout(SourceError, TimeoutError):
    """A paper source did not answer in time."""


class SourceHTTPError(SourceError, ConnectionError):
    """A paper source answered with an HTTP error or an error page."""


class ParseError(SourceError, ValueError):
    """A payload or file is not in the format it claims to be."""


class UnknownFormatError(ParseError):
    """A file's content matches none of the formats Slice reads."""


class SomeSourcesFailed(SourceError):
    """Some sources or files could not be read; the others were stored."""


# --- compose --------------------------------------------------------------


class ComposeError(NewsletterError):
    """An issue could not be selected or rendered."""


class NoPapersError(ComposeError):
    """The chosen window holds no papers."""


class TemplateError(ComposeError):
    """A template is broken; the message names its file and line."""


class MjmlError(TemplateError):
    """MJML that would compile into a broken or unsafe email; lists each problem with its line."""

    def __init__(self, problems: Sequence[object], *, where: str = "MJML") -> None:
        self.problems = list(problems)
        self.where = where
        shown = "; ".join(str(p) for p in self.problems[:3])
        more = f" (and {len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
        super().__init__(f"{where}: {shown}{more}")


class IssueNotFoundError(NewsletterError, FileNotFoundError):
    """No composed issue of that id exists in the outbox."""


# --- subscribers and tokens -----------------------------------------------


class SubscriberError(NewsletterError):
    """A subscriber operation was refused."""


class InvalidAddressError(SubscriberError, ValueError):
    """An email address is not deliverable as written."""


class InvalidNameError(SubscriberError, ValueError):
    """A subscriber's name holds a line break, a control character, or is too long."""


class SubscriberNotFoundError(SubscriberError, LookupError):
    """No subscriber has that address."""


class TokenError(NewsletterError, ValueError):
    """A confirm or unsubscribe token is forged, truncated or for another purpose."""


class TokenExpiredError(TokenError):
    """A token was genuine but is past its lifetime."""


class ImportFileError(SubscriberError, ValueError):
    """A subscriber import file cannot be read at all (encoding, header)."""


# --- sending --------------------------------------------------------------


class SendError(NewsletterError):
    """A send could not start or had to stop."""


class RelayRefusedError(SendError, ConnectionError):
    """The SMTP relay refuses everything (authentication, repeated 421s); the send stopped early."""


class HeaderInjectionError(SendError, ValueError):
    """A value meant for a mail header holds a line break or control character."""


class BounceFileError(NewsletterError, ValueError):
    """A bounce-report file or mailbox cannot be read at all."""


def error_line(exc: BaseException) -> str:
    """Why something failed, in one short line (a driver's message runs on with the SQL)."""
    first = str(exc).strip().split("\n", 1)[0]
    return (first[:300] or exc.__class__.__name__).strip()
