"""The MLflow UI in a real headless Chromium after a smoke sweep: what `make ui` shows.

Debian's chromium, driven by Playwright; no browser is ever downloaded. Without a browser (or
Playwright) the tests skip, except in CI (CI set to anything but empty, 0, false or no: .ci/run
sets CI=true and runs `make test`, which installs both first), where that is a failure.
`UPDATE_DOCS_SCREENSHOT=1 pytest tests/test_ui_browser.py` refreshes docs/mlflow-ui.png.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from servers import free_port, serve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from ui_links import experiment_links  # noqa: E402  (what `make ui` prints)

DOCS_SCREENSHOT = ROOT / "docs" / "mlflow-ui.png"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
TIMEOUT_MS = 60_000


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(message: str) -> None:
    """A missing browser or Playwright: a failure in CI, a skip elsewhere."""
    if under_ci():
        pytest.fail(f"{message}; CI={os.environ['CI']} needs it", pytrace=False)
    pytest.skip(message)


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        missing("Debian's chromium is not installed (apt-get install chromium)")
    return path


def playwright_api():
    try:
        from playwright import sync_api
    except ImportError:
        missing("Playwright is not installed (pip install -e '.[dev]')")
    return sync_api


@pytest.mark.parametrize("ci", ["true", "1", "yes", "True"])
def test_a_missing_browser_fails_under_ci_instead_of_skipping(monkeypatch, ci: str) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="chromium is not installed"):
        chromium_path()
    monkeypatch.setitem(sys.modules, "playwright", None)  # import playwright fails
    with pytest.raises(pytest.fail.Exception, match="Playwright is not installed"):
        playwright_api()
    for off in ("", "0", "false"):
        monkeypatch.setenv("CI", off)
        with pytest.raises(pytest.skip.Exception):
            chromium_path()


def test_ci_installs_the_browser_and_playwright_before_the_tests() -> None:
    """.ci/run marks the run as CI and runs `make test`, then `make test-faults`, whose
    prerequisites install the locked Python packages (Playwright among them) and Debian's
    chromium and PostgreSQL."""
    run = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in run.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert "export CI=true" in commands
    assert commands[-2:] == ["make test", "make test-faults"], commands
    make = (ROOT / "Makefile").read_text()
    for target in ("test", "test-faults"):
        (prereqs,) = [line.split(":", 1)[1].split() for line in make.splitlines()
                      if line.startswith(f"{target}:")]
        assert {"setup", "system-packages"} <= set(prereqs), target
    assert "./scripts/install-system-packages.sh" in make
    script = (ROOT / "scripts" / "install-system-packages.sh").read_text()
    assert "command -v chromium" in script and "missing+=(chromium)" in script
    lock = (ROOT / "requirements.lock").read_text()
    assert "\nplaywright==" in lock


@pytest.fixture(scope="module")
def mlflow_ui(smoke_sweep: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow ui` over the smoke sweep's store, as `make ui` starts it, on a free port."""
    port = free_port()
    store = smoke_sweep / "mlruns"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "ui",
           "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
           "--default-artifact-root", str(store / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("mlflow-ui") / "server.log"
    with serve(cmd, f"{url}/health", log, cwd=smoke_sweep):
        yield url


@pytest.fixture(scope="module")
def page(mlflow_ui: str) -> Iterator:
    sync_api = playwright_api()
    executable = chromium_path()
    with sync_api.sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        browser = pw.chromium.launch_persistent_context(
            profile, executable_path=executable, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1500, "height": 900},
        )
        browser.set_default_timeout(TIMEOUT_MS)
        yield browser.new_page()
        browser.close()


def test_experiment_lists_studies_and_their_trials(
    page, mlflow_ui: str, smoke_sweep: Path, tmp_path: Path
) -> None:
    client = MlflowClient(f"sqlite:///{smoke_sweep / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("adding")
    parents = client.search_runs([experiment.experiment_id], "tags.role = 'study'")
    assert len(parents) == 4
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # The README's path: the runs-table link `make ui` prints for the experiment.
    links = dict(experiment_links(mlflow_ui, smoke_sweep / "mlruns" / "mlflow.db"))
    page.goto(links["adding"])
    for run in parents:
        page.get_by_role("link", name=run.info.run_name, exact=True).wait_for()
    assert f"#/experiments/{experiment.experiment_id}/runs" in page.url
    # Nested trial runs stay folded under their study until it is expanded.
    assert page.get_by_role("link", name="trial-000", exact=True).count() == 0
    close_assistant = page.get_by_role("button", name="Close")  # a clean screenshot
    if close_assistant.count():
        close_assistant.first.click()

    study = next(r for r in parents if r.data.tags["data_size"] == "small"
                 and r.data.tags["cell"] == "lstm")
    row = page.get_by_role("row").filter(has_text=study.info.run_name)
    row.first.locator('[col-id="attributes.`Run Name`"] button').first.click()
    trials = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{study.info.run_id}'"
    )
    assert len(trials) >= 3
    for trial in trials:
        page.get_by_role("link", name=trial.info.run_name, exact=True).wait_for()
    page.screenshot(path=tmp_path / "experiment.png")
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "experiment.png", DOCS_SCREENSHOT)


def test_trial_page_shows_val_loss_chart(
    page, mlflow_ui: str, smoke_sweep: Path, tmp_path: Path
) -> None:
    client = MlflowClient(f"sqlite:///{smoke_sweep / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("adding")
    trial = client.search_runs(
        [experiment.experiment_id], "tags.role = 'trial' and tags.state = 'COMPLETE'"
    )[0]
    assert len(client.get_metric_history(trial.info.run_id, "val_loss")) >= 2
    page.goto(f"{mlflow_ui}/#/experiments/{experiment.experiment_id}"
              f"/runs/{trial.info.run_id}/model-metrics")
    page.get_by_placeholder("Search metric charts").fill("val_loss")
    card = page.get_by_test_id("experiment-view-compare-runs-card").filter(
        has=page.get_by_role("heading", name="val_loss", exact=True)
    )
    card.first.wait_for()
    # A drawn plotly line, with the trial named in its legend.
    card.first.locator("svg.main-svg path.js-line").first.wait_for()
    card.first.get_by_text(f"{trial.info.run_name} (val_loss)").wait_for()
    page.screenshot(path=tmp_path / "trial-val-loss.png")


def test_every_study_shows_its_model_datasets_and_source(
    page, mlflow_ui: str, smoke_sweep: Path, tmp_path: Path
) -> None:
    """What an MLflow user looks for on a study's page: the logged best model, the data
    (one dataset per split, named with its digest) and the commit that ran it."""
    client = MlflowClient(f"sqlite:///{smoke_sweep / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("adding")
    parents = client.search_runs([experiment.experiment_id], "tags.role = 'study'")
    assert len(parents) == 4
    shown: dict[str, str] = {}  # study run name -> its training set as the UI names it
    for study in parents:
        model_id = study.data.tags["best_model_id"]
        datasets = {next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
                    for d in study.inputs.dataset_inputs}
        assert sorted(datasets) == ["test", "train", "val"]
        shown[study.info.run_name] = f"{datasets['train'].name} ({datasets['train'].digest})"
        commit = study.data.tags.get("mlflow.source.git.commit")
        page.goto(f"{mlflow_ui}/#/experiments/{experiment.experiment_id}/runs/"
                  f"{study.info.run_id}?workflowType=machine_learning")
        page.get_by_role("heading", name="Logged models (1)").wait_for()
        page.locator(f'a[href="#/experiments/{experiment.experiment_id}/models/{model_id}"]'
                     ).first.wait_for()
        page.get_by_text(shown[study.info.run_name], exact=True).first.wait_for()
        page.get_by_text("train.py").first.wait_for()
        if commit is not None:  # the tests run from a git checkout
            page.get_by_text(commit[:7], exact=True).first.wait_for()
    page.screenshot(path=tmp_path / "study.png")
    # The runs table, one row per study: its data, its source and its model. The grid draws
    # the pinned Run Name column in a row of its own: cells are found by the row's index.
    page.goto(dict(experiment_links(mlflow_ui, smoke_sweep / "mlruns" / "mlflow.db"))["adding"])
    for name, train in shown.items():
        index = page.get_by_role("row").filter(has_text=name).first.get_attribute("row-index")

        def cell(column: str, index: str | None = index):
            return page.locator(f'[role="row"][row-index="{index}"] '
                                f'[col-id="attributes.`{column}`"]').first

        cell("Dataset").get_by_text(train, exact=True).first.wait_for()
        cell("Source").get_by_text("train.py").first.wait_for()
        cell("Models").get_by_text("model").first.wait_for()
    page.screenshot(path=tmp_path / "runs-table.png")
