"""Keep credentials in storage and tracking URIs out of logs, tags and artifacts.

Where a URL's password ends depends on who parses it, so the mask follows the stores' parsers:

- SQLAlchemy's ``make_url`` (Optuna's RDB storage; MLflow's database stores) reads
  ``name://user:password@host...`` with the user name up to the first ``:`` (no ``/`` in it)
  and the password from there to the next ``@``; ``/``, ``:``, ``#`` and ``?`` may appear in
  it literally.
- urllib, urllib3 and requests (MLflow's REST client for ``http(s)://``) cut the authority at
  the first ``/``, ``?`` or ``#``, take the user info before its *last* ``@`` and the password
  after the user info's first ``:``.

In both the password starts right after the first ``:`` that follows ``scheme://`` and ends
at an ``@`` no later than the last ``@`` of the URL. ``redact`` masks exactly that span: from
the first ``:`` to the last ``@`` before the next whitespace. It is the union of what every
parser above reads as the password, and it also covers a password typed in a form a parser
would misread (a literal ``/`` or ``@`` in an http URL), which then shows up in error
messages. The price is masking too much when a query string holds an ``@`` or when several
URLs touch without whitespace between them; a password never survives.

``remember`` adds the passwords of URLs given on the command line or in the environment to a
list of known secrets that are masked anywhere in a text, also outside a URL (a password with
a space, a password echoed percent-decoded).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

MASK = "***"
# A scheme as RFC 3986 spells it, then "://".
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_SPACE = re.compile(r"\s")
# Known secrets shorter than this are masked only inside URLs: masking every "pw" or
# "adam" in a log would garble it.
MIN_KNOWN_SECRET = 6
_known: set[str] = set()


def password_spans(text: str, whole: bool = False) -> list[tuple[int, int]]:
    """(start, end) of every URL password in `text`, as the stores' URL parsers split it.

    In free text a URL ends at whitespace; `whole=True` reads `text` as one value (a
    command-line argument), whose URL may hold a space.
    """
    spans = []
    pos = 0
    while True:
        m = _SCHEME.search(text, pos)
        if m is None:
            return spans
        begin = m.end()
        space = None if whole else _SPACE.search(text, begin)
        end = space.start() if space else len(text)
        at = text.rfind("@", begin, end)
        colon = text.find(":", begin, end)
        if at != -1 and colon != -1 and colon < at:
            spans.append((colon + 1, at))
            pos = at + 1  # a second scheme inside the masked span is masked already
        else:
            pos = begin


def redact(text: str) -> str:
    """`text` with every URL password (and every remembered secret) replaced by ***."""
    for start, end in reversed(password_spans(text)):  # from the end: earlier spans stay put
        text = text[:start] + MASK + text[end:]
    for secret in sorted(_known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def userinfo_problem(url: str) -> str | None:
    """Why a store would misread this URL's user info, or None.

    A misread URL puts part of the password where the store shows it: SQLAlchemy ends a
    password at its first '@' and takes the rest for the host name ('could not translate
    host name "ss@db"'); urllib and requests end an http(s) URL's host part at '/', '?' or
    '#'. Refusing such a URL in the preflight keeps those messages from ever being written.
    """
    spans = password_spans(url, whole=True)
    if not spans:
        return None
    start, end = spans[0]
    scheme_end = url.index("://")
    user, secret = url[scheme_end + 3 : start - 1], url[start:end]
    if url[:scheme_end].lower() in ("http", "https"):
        bad = [c for c in "/?#" if c in user + secret]
        if bad:
            return (f"the user name or password holds {' '.join(bad)}, which end(s) a URL's "
                    "host part: write / ? # as %2F %3F %23")
        return None
    if "@" in secret:
        return "the password holds '@', which ends it for SQLAlchemy: write @ as %40"
    if "/" in user:
        return "the user name holds '/', which ends it for SQLAlchemy: write / as %2F"
    return None


def secrets_in(value: str) -> set[str]:
    """The passwords of the URLs in one value (as written and percent-decoded)."""
    found = set()
    for start, end in password_spans(value, whole=True):
        raw = value[start:end]
        found |= {raw, unquote(raw)}
    return {s for s in found if s}


def remember(values: Iterable[str | None]) -> None:
    """Mask the URL passwords in `values` anywhere from now on (command line, config)."""
    for value in values:
        if value:
            _known.update(s for s in secrets_in(str(value)) if len(s) >= MIN_KNOWN_SECRET)


def remember_environment(environ: dict[str, str] | None = None) -> None:
    """MLflow's own credential variables and the tracking URI of the environment."""
    env = os.environ if environ is None else environ
    remember([env.get("MLFLOW_TRACKING_URI")])
    for key in ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        value = env.get(key)
        if value and len(value) >= MIN_KNOWN_SECRET:
            _known.add(value)


def forget_all() -> None:
    """Clear the remembered secrets (tests)."""
    _known.clear()


class RedactFilter(logging.Filter):
    """Masks credentials in every record a handler emits (set up in conf/hydra/*_logging),
    the formatted traceback of a record included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def redact_files(paths: Iterable[Path]) -> None:
    """Rewrite files (Hydra's saved config and overrides) with credentials masked.

    Atomic (a temporary file renamed over the original): parallel jobs of one sweep rewrite
    the same multirun.yaml, and a reader never sees a half-written file.
    """
    for path in paths:
        if not path.is_file():
            continue
        text = path.read_text()
        masked = redact(text)
        if masked != text:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(masked)
            os.replace(tmp, path)
