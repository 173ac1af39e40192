"""Keep credentials in storage and tracking URIs out of logs, tags and artifacts."""

from __future__ import annotations

import re

# scheme://user:password@host -> scheme://user:***@host
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<secret>[^@\s/]+)@")


def redact(text: str) -> str:
    return _USERINFO.sub(lambda m: f"{m.group('head')}:***@", text)
