"""Credentials in URLs are masked wherever text leaves the process."""

from __future__ import annotations

import logging

import pytest

from rnnsweep.redact import RedactFilter, redact, redact_files

SECRET = "s3cretpw"


@pytest.mark.parametrize("url", [
    f"postgresql://user:{SECRET}@127.0.0.1:5432/db",
    f"postgresql+psycopg2://user:{SECRET}@db.example.org/optuna",
    f"http://admin:{SECRET}@tracking:5000",
    f"mysql://u:{SECRET}@h/db?ssl=true",
])
def test_password_in_url_is_masked_and_the_rest_kept(url):
    text = f"search.storage={url} and more"
    masked = redact(text)
    assert SECRET not in masked
    assert masked == text.replace(f":{SECRET}@", ":***@")


def test_urls_without_password_are_unchanged():
    for text in ("sqlite:////tmp/mlruns/optuna.db", "http://127.0.0.1:5000",
                 "postgresql://user@host/db", "lr=0.001 at 12:30"):
        assert redact(text) == text


def test_log_filter_masks_message_and_arguments(caplog):
    logger = logging.getLogger("rnnsweep.test_redaction")
    logger.addFilter(RedactFilter())
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("storage %s", f"postgresql://u:{SECRET}@h/db")
    assert SECRET not in caplog.text and "u:***@h/db" in caplog.text


def test_saved_override_files_are_rewritten_masked(tmp_path):
    saved = tmp_path / "overrides.yaml"
    saved.write_text(f"- search.storage=postgresql://u:{SECRET}@h/db\n")
    redact_files([saved, tmp_path / "missing.yaml"])
    assert saved.read_text() == "- search.storage=postgresql://u:***@h/db\n"
