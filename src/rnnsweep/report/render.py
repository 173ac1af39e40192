"""One document, two renderings: Markdown (figures linked) and HTML (figures inline, base64).

The document is a short list of blocks, so both renderings come from the same content
without a Markdown-to-HTML dependency.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@contextmanager
def writing(path: Path) -> Iterator[Path]:
    """Write `path` in the block; an OSError names it. A full disk fails the write or the
    close (ENOSPC, or EFBIG past a file size limit) with an error that names no file, and
    the report's one error line must say which file could not be written."""
    try:
        yield path
    except OSError as err:
        if err.filename is None:
            err.filename = str(path)
        raise


def save_csv(df: pd.DataFrame, path: Path) -> None:
    with writing(path):
        df.to_csv(path, index=False)


def save_text(path: Path, text: str) -> None:
    with writing(path):
        path.write_text(text)


@dataclass
class Document:
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", (level, text)))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, df: pd.DataFrame) -> None:
        self.blocks.append(("table", df))

    def image(self, path: Path, caption: str) -> None:
        self.blocks.append(("img", (path, caption)))


def _md_cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(_md_cell(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in df.itertuples(False)]
    return "\n".join([head, rule, *body])


def to_markdown(doc: Document, base: Path) -> str:
    out = []
    for kind, value in doc.blocks:
        if kind == "h":
            level, text = value  # type: ignore[misc]
            out.append(f"{'#' * level} {text}")
        elif kind == "p":
            out.append(str(value))
        elif kind == "table":
            out.append(md_table(value))  # type: ignore[arg-type]
        else:
            path, caption = value  # type: ignore[misc]
            out.append(f"![{caption}]({Path(path).relative_to(base).as_posix()})")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Escape, then render `code` spans: the only inline markup the report uses."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


# The page never scrolls sideways: a table wider than the text column (the summary has ~20
# columns) scrolls inside its own box, figures shrink to the column, long unbroken words
# (study names, paths) break. Figures are scaled, never cropped (height follows width).
STYLE = (
    "body{font-family:sans-serif;max-width:70em;margin:auto;padding:0 1em;"
    "overflow-wrap:break-word}"
    ".table-scroll{overflow-x:auto;max-width:100%;margin:1em 0}"
    "table{border-collapse:collapse;font-size:90%}"
    "td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top}"
    "th{text-align:left;vertical-align:bottom}"
    "figure{margin:1em 0}img{max-width:100%;height:auto}"
)


def to_html(doc: Document, title: str) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'>"
             "<meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"]
    for kind, value in doc.blocks:
        if kind == "h":
            level, text = value  # type: ignore[misc]
            parts.append(f"<h{level}>{_inline(text)}</h{level}>")
        elif kind == "p":
            parts.append(f"<p>{_inline(str(value))}</p>")
        elif kind == "table":
            parts.append("<div class='table-scroll'>"
                         + value.to_html(index=False, escape=True)  # type: ignore[union-attr]
                         + "</div>")
        else:
            path, caption = value  # type: ignore[misc]
            data = base64.b64encode(Path(path).read_bytes()).decode()
            parts.append(f"<figure><img alt='{html.escape(caption)}' "
                         f"src='data:image/png;base64,{data}'><figcaption>"
                         f"{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)
