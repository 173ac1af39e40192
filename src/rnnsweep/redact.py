"""Keep credentials in storage and tracking URIs out of logs, tags and artifacts."""

from __future__ import annotations

import logging
import re
from pathlib import Path

# scheme://user:password@host -> scheme://user:***@host
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<secret>[^@\s/]+)@")


def redact(text: str) -> str:
    return _USERINFO.sub(lambda m: f"{m.group('head')}:***@", text)


class RedactFilter(logging.Filter):
    """Masks credentials in every record a handler emits (set up in conf/hydra/*_logging)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def redact_files(paths: list[Path]) -> None:
    """Rewrite files (Hydra's saved config and overrides) with credentials masked."""
    for path in paths:
        if path.is_file():
            text = path.read_text()
            masked = redact(text)
            if masked != text:
                path.write_text(masked)
