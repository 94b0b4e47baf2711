"""A researcher's review of a campaign in the MLflow UI, in a real (headless) Chromium.

The UI is a React app: whether a campaign is reviewable without code is only known once a browser
has rendered it. These tests open the campaign run, its nested experiment runs, the plots and the
summary table the way a researcher would (deep links included in docs/deployment.md and
docs/review.md), compare two fresh campaigns side by side by their campaign metrics, find each
experiment's in-band flags, and save screenshots into ``artifacts/screenshots/`` (git-ignored; CI
keeps the folder as a build artifact), or into ``$AUTOLAB_SCREENSHOT_DIR``.

Uses Debian's ``chromium`` and ``chromedriver`` (``scripts/ci/browser.sh``) through Selenium;
nothing is downloaded. The browser talks only to the 127.0.0.1 server.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from autolab.campaign import Campaign, CampaignResult
from autolab.config import parse_campaign
from autolab.tracking import MlflowTracker

pytestmark = [pytest.mark.browser, pytest.mark.server]

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
from selenium.common.exceptions import TimeoutException, WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ROOT = Path(__file__).parents[2]
CAMPAIGN = ROOT / "campaigns" / "target_550nm.yaml"
RED_CAMPAIGN = ROOT / "campaigns" / "target_610nm_red.yaml"
#: Where screenshots are kept (CI uploads this folder); ``$AUTOLAB_SCREENSHOT_DIR`` overrides.
SCREENSHOT_DIR = ROOT / "artifacts" / "screenshots"
#: What a campaign run shows in the compare view: the campaign summary, not one experiment.
CAMPAIGN_METRICS = ("best_pl_peak_nm", "best_qy", "best_fwhm_nm", "best_experiment",
                    "n_experiments", "n_failed")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1600,1000")
# The UI remembers its "GenAI / Model training" switch per browser; a campaign lives in the runs
# table of "Model training", so links name it (a fresh profile would start in GenAI).
ML_VIEW = "workflowType=machine_learning"
WAIT_S = 30
#: A route the UI does not have, and what it shows there (see :func:`_open`).
NOT_A_PAGE, NOT_FOUND = "/autolab-test-not-a-page", "Page Not Found"


@dataclass(frozen=True)
class Reviewed:
    """The campaign on the server: where it is, and what the campaign itself returned."""

    uri: str
    experiment_id: str
    result: CampaignResult
    child_ids: dict[str, str]


def _run_campaign(uri: str, file: Path, runs: Path, experiments: int = 3) -> Reviewed:
    """Run a Sobol campaign of ``experiments`` logged over HTTP to the server at ``uri``.

    Three experiments are enough for a campaign run with nested runs, plots and a summary
    table; each one logged over HTTP (spectra, plots) costs seconds of both processes' CPU.
    """
    raw = yaml.safe_load(file.read_text())
    raw["optimizer"] = {"kind": "sobol"}
    raw["budget"] = {"max_experiments": experiments}
    config = parse_campaign(raw, str(file))
    tracker = MlflowTracker(uri, "ui-review")
    result = Campaign.create(config, runs, tracker=tracker).run()
    assert result.tracking_run_id is not None
    trial_runs = tracker.trial_runs()
    return Reviewed(uri=uri, experiment_id=str(trial_runs[0].info.experiment_id),
                    result=result,
                    child_ids={str(r.info.run_name): str(r.info.run_id) for r in trial_runs})


@pytest.fixture(scope="module")
def campaign_on_server(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> Reviewed:
    return _run_campaign(mlflow_server, CAMPAIGN, tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def red_campaign_on_server(mlflow_server: str,
                           tmp_path_factory: pytest.TempPathFactory) -> Reviewed:
    """A second, fresh campaign (610 nm) in the same MLflow experiment, to compare with.

    Two experiments: the comparison reads its campaign run (name and summary metrics), never
    its experiments; each one logged over HTTP (spectra, plots) took seconds.
    """
    return _run_campaign(mlflow_server, RED_CAMPAIGN, tmp_path_factory.mktemp("runs-red"),
                         experiments=2)


@pytest.fixture(scope="module")
def screenshots() -> Path:
    """``$AUTOLAB_SCREENSHOT_DIR`` if set, else ``artifacts/screenshots/``; kept for CI."""
    path = Path(os.environ.get("AUTOLAB_SCREENSHOT_DIR") or SCREENSHOT_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_exe = shutil.which("chromedriver")
    if chromium is None or driver_exe is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed: run "
                    "scripts/ci/browser.sh")
    profile = tempfile.mkdtemp(prefix="autolab-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_exe), options=opts)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _open(driver: Any, url: str, *, reload: bool = False) -> None:
    """Show ``url``: a fresh load of the app with ``reload``, else a route change inside it.

    The UI is one page that routes by the hash: between its pages only the hash changes and it
    renders the new route without loading its 22 MB of JavaScript again (a full load cost each
    visit 1-2 s of CPU in Chromium). So the previous page's text is never read as the new one's,
    the app first shows a route it does not have (its "Page Not Found" view, which no review
    page shows) and only then the wanted one. Each test's first page is a fresh load
    (``about:blank`` first: a ``get`` that changes only the hash keeps the page), so no test
    reads what an earlier one left in the app's caches.
    """
    page, _, route = url.partition("#")
    here = str(driver.current_url)
    if reload or "#" not in here or here.partition("#")[0] != page:
        driver.get("about:blank")
        driver.get(url)
        return
    driver.execute_script("window.location.hash = arguments[0];", NOT_A_PAGE)
    _wait(driver, "the UI's not-found page", lambda d: NOT_FOUND in _text(d))
    driver.execute_script("window.location.hash = arguments[0];", route)


def _wait(driver: Any, what: str, cond: Callable[[Any], Any], wait_s: float = WAIT_S) -> Any:
    try:
        return WebDriverWait(driver, wait_s, poll_frequency=0.25,
                             ignored_exceptions=(WebDriverException,)).until(cond)
    except TimeoutException:
        body = driver.find_element(By.TAG_NAME, "body").text[:1500]
        pytest.fail(f"MLflow UI: {what} did not appear within {wait_s} s; page shows:\n{body}")


def _text(driver: Any) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def _scrolled_text(driver: Any, wanted: tuple[str, ...]) -> str:
    """The page's text including rows below the fold of its scrolling boxes.

    The compare view lists metrics in a virtualized box of about seven rows: the others are only
    rendered once scrolled to, as a person scrolls them. Scrolling stops once every ``wanted``
    string has been seen (each step waits 0.3 s for the rows to render, and the page has several
    tall boxes); when one is never seen, every box is scrolled to its end, as before. The
    innermost boxes are scrolled first: a virtualized list is one, and the page's own tall box
    (some ten steps) holds no hidden rows.
    """
    seen = [_text(driver)]
    boxes = driver.execute_script(
        "const depth = e => { let d = 0; for (; e; e = e.parentElement) d++; return d; };"
        "return Array.from(document.querySelectorAll('*')).filter("
        "e => e.scrollHeight > e.clientHeight + 5 && e.clientHeight > 40)"
        ".sort((a, b) => depth(b) - depth(a));")
    for box in boxes:
        height, step = driver.execute_script(
            "return [arguments[0].scrollHeight, Math.max(40, arguments[0].clientHeight / 2)];", box)
        y = 0.0
        while y <= height:
            if all(w in "\n".join(seen) for w in wanted):
                return "\n".join(seen)
            driver.execute_script("arguments[0].scrollTop = arguments[1];", box, y)
            time.sleep(0.3)
            seen.append(_text(driver))
            y += step
    return "\n".join(seen)


def _close_assistant(driver: Any) -> None:
    """Hide MLflow 3's assistant side panel, which takes a third of the width of a screenshot."""
    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        try:
            if button.is_displayed():
                button.click()
        except WebDriverException:
            continue


def _image_loaded(driver: Any, name: str) -> bool:
    """An image named ``name`` (its alt text: the viewer loads artifacts as blobs) has pixels."""
    return bool(driver.execute_script(
        "return Array.from(document.images).some(i => (i.alt.endsWith(arguments[0]) || "
        "i.src.includes(arguments[0])) && i.complete && i.naturalWidth > 100);", name))


def test_campaign_reviewable_in_browser(campaign_on_server: Reviewed, browser: Any,
                                        screenshots: Path) -> None:
    c = campaign_on_server
    run_id = c.result.tracking_run_id
    base = f"{c.uri}/#/experiments/{c.experiment_id}"

    # the experiment's runs table lists the campaign run
    _open(browser, f"{base}/runs?{ML_VIEW}", reload=True)
    _wait(browser, "campaign run in the runs table", lambda d: "target-550nm" in _text(d))
    _close_assistant(browser)
    browser.save_screenshot(str(screenshots / "01_runs_table.png"))

    # the campaign run: one-line description, tags and its nested experiment runs
    _open(browser, f"{base}/runs/{run_id}?{ML_VIEW}")
    _wait(browser, "campaign run page with child runs", lambda d: "exp-002" in _text(d))
    _close_assistant(browser)
    page = _text(browser)
    assert all(f"exp-00{i}" in page for i in range(3))
    assert "target-550nm" in page
    assert "pl_peak_nm = 550 ± 2" in page  # the description says what was asked for
    assert "3 experiments" in page
    browser.save_screenshot(str(screenshots / "02_campaign_run.png"))

    # campaign plots render as images in the artifact viewer
    for shot, name in (("03", "convergence.png"), ("04", "parameters_vs_outcomes.png")):
        _open(browser, f"{base}/runs/{run_id}/artifacts/plots/{name}?{ML_VIEW}")
        _wait(browser, f"plots/{name} rendered", lambda d, n=name: _image_loaded(d, n))
        _close_assistant(browser)
        browser.save_screenshot(str(screenshots / f"{shot}_{name}"))

    # the summary table renders as a table (HTML artifact, in an iframe)
    _open(browser, f"{base}/runs/{run_id}/artifacts/summary/trials.html?{ML_VIEW}")
    frame = _wait(browser, "summary table frame",
                  lambda d: d.find_elements(By.CSS_SELECTOR, "iframe") or False)[0]
    _close_assistant(browser)
    browser.switch_to.frame(frame)
    try:
        table = _wait(browser, "summary table rows",
                      lambda d: "exp-002" in _text(d) and _text(d))
    finally:
        browser.switch_to.default_content()
    assert "PL peak (nm)" in table
    assert "QY (%)" in table
    browser.save_screenshot(str(screenshots / "05_summary_table.png"))

    # a nested experiment run: its spectrum plot
    child = c.child_ids["exp-000"]
    _open(browser, f"{base}/runs/{child}/artifacts/spectrum.png?{ML_VIEW}")
    _wait(browser, "spectrum.png of exp-000", lambda d: _image_loaded(d, "spectrum.png"))
    _close_assistant(browser)
    browser.save_screenshot(str(screenshots / "06_experiment_spectrum.png"))

    for png in screenshots.glob("0*.png"):
        assert png.read_bytes().startswith(b"\x89PNG"), png


def test_two_campaigns_compare_side_by_side(campaign_on_server: Reviewed,
                                            red_campaign_on_server: Reviewed, browser: Any,
                                            screenshots: Path) -> None:
    green, red = campaign_on_server, red_campaign_on_server
    assert green.experiment_id == red.experiment_id  # comparable: one MLflow experiment
    base = f"{green.uri}/#/experiments/{green.experiment_id}"
    ids = [green.result.tracking_run_id, red.result.tracking_run_id]

    # the runs table lists both campaigns
    _open(browser, f"{base}/runs?{ML_VIEW}", reload=True)
    _wait(browser, "both campaigns in the runs table",
          lambda d: "target-550nm" in _text(d) and "target-610nm-red" in _text(d))
    _close_assistant(browser)
    browser.save_screenshot(str(screenshots / "07_two_campaigns.png"))

    # the campaign run page shows the campaign's summary metrics
    _open(browser, f"{base}/runs/{ids[0]}?{ML_VIEW}")
    _wait(browser, "campaign metrics on the campaign run",
          lambda d: "best_pl_peak_nm" in _text(d))
    _close_assistant(browser)
    page = _text(browser)
    assert all(name in page for name in ("best_qy", "n_experiments")), page[:2000]
    assert "pl_peak_nm_err" not in page  # no experiment's metrics on the campaign run
    browser.save_screenshot(str(screenshots / "08_campaign_metrics.png"))

    # the compare view (what the "Compare" button opens): campaign metrics side by side
    query = urllib.parse.urlencode({"runs": json.dumps(ids),
                                    "experiments": json.dumps([green.experiment_id])})
    _open(browser, f"{green.uri}/#/compare-runs?{query}")
    _wait(browser, "compare view with the campaign metrics",  # loads every run: slower
          lambda d: "Show diff only" in _text(d) and CAMPAIGN_METRICS[0] in _text(d),
          wait_s=3 * WAIT_S)
    _close_assistant(browser)
    browser.save_screenshot(str(screenshots / "09_compare_campaigns.png"))
    page = _scrolled_text(browser, (*CAMPAIGN_METRICS, "target-550nm", "target-610nm-red"))
    missing = [name for name in CAMPAIGN_METRICS if name not in page]
    assert not missing, f"compare view lacks {missing}: {page[:1500]}"
    assert "target-550nm" in page and "target-610nm-red" in page

    # an experiment run shows whether it is inside each target band, and how far off
    child = green.child_ids["exp-000"]
    _open(browser, f"{base}/runs/{child}?{ML_VIEW}")
    _wait(browser, "in-band flag of exp-000", lambda d: "in_band.pl_peak_nm" in _text(d))
    _close_assistant(browser)
    page = _text(browser)
    assert "distance_to_target_nm.pl_peak_nm" in page
    assert "score.target_pl_peak_nm" in page
    browser.save_screenshot(str(screenshots / "10_experiment_in_band.png"))
