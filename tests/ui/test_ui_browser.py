"""The web UI and the report in a real browser: headless Chromium driven by Selenium.

Needs the Debian packages `chromium` and `chromium-driver`; without them the tests skip, or fail
when AGENTMETA_REQUIRE_SYSTEM=1 (CI)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from agentmeta.archive import Archive, Candidate
from agentmeta.conductor.core import ConductorResult, Turn
from agentmeta.models.types import Usage
from tests.servers import free_port
from tests.ui.conftest import HOSTILE_NAME, make_archive

selenium = pytest.importorskip("selenium")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


def _require_browser() -> None:
    if CHROMIUM and DRIVER:
        return
    why = "needs Chromium and chromedriver (Debian packages chromium, chromium-driver)"
    if os.environ.get("AGENTMETA_REQUIRE_SYSTEM") == "1":
        pytest.fail(f"AGENTMETA_REQUIRE_SYSTEM=1 but the browser tests cannot run: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    _require_browser()
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1600", "--disable-extensions", "--no-first-run"):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()



@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`agentmeta ui`'s app on 127.0.0.1 over a fresh mock campaign's archive, in a thread."""
    import uvicorn

    from agentmeta.ui.app import create_app

    path, name = make_archive(tmp_path_factory.mktemp("browser"))
    archive = Archive(path, create=False)
    archive.add_conductor_run(
        ConductorResult(
            answer="156", rounds=1, usage=Usage(calls=2, prompt_tokens=20, completion_tokens=5),
            transcript=[Turn(role="conductor", content='Expert Python:\n"""print(12*13)"""', round=1),
                        Turn(role="python", name="Python", content="<b>156</b>", round=1)],
        ),
        "What is 12*13? <script>alert(5)</script>", models={"conductor": "mock"},
    )  # fmt: skip
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(archive), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "the UI server did not start"
    yield f"http://127.0.0.1:{port}", path, name
    srv.should_exit = True
    thread.join(timeout=10)
    archive.close()


def _console_errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def _open(driver, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _no_alert(driver) -> None:
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018


def test_every_page_loads_without_console_errors_and_draws_its_plots(browser, server):
    base, path, name = server
    with Archive(path, create=False) as archive:
        camp = archive.get_campaign(name)
        cands = archive.candidates(campaign=camp.id)
        conf = camp.state["confirmation"]
        run = archive.conductor_runs()[0]
    pages = {
        "/": [],
        f"/conductor/{run.id}": [],
        f"/campaign/{camp.id}": ["best-so-far", "scatter", "lineage"],
        f"/compare?a={conf['best']}&b={conf['best_seed']}": [],
        **{f"/candidate/{c.id}": ["graph-agent"] for c in cands},
    }
    _console_errors(browser)  # drop anything logged before
    for url, plots in pages.items():
        _open(browser, base + url)
        assert browser.find_element(By.TAG_NAME, "h1").text, url
        for plot in plots:
            svg = browser.find_element(By.CSS_SELECTOR, f'svg[data-plot="{plot}"]')
            assert svg.size["width"] > 100 and svg.size["height"] > 50, (url, plot)
            assert svg.find_elements(By.CSS_SELECTOR, "circle, rect"), (url, plot)
        assert _console_errors(browser) == [], url
        _no_alert(browser)
    # the conductor run: its question is text, its transcript shown turn by turn
    _open(browser, base + "/")
    browser.find_element(By.CSS_SELECTOR, "a.conductor-link").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".turn"))
    assert "<script>alert(5)</script>" in browser.find_element(By.TAG_NAME, "pre").text
    assert [t.text.splitlines()[0] for t in browser.find_elements(By.CSS_SELECTOR, ".turn")] == [
        "round 1: conductor", "round 1: python Python"
    ]
    assert "<b>156</b>" in browser.find_elements(By.CSS_SELECTOR, ".turn pre")[1].text
    _no_alert(browser)


def test_navigation_from_leaderboard_to_candidate_to_lineage(browser, server):
    base, path, name = server
    _open(browser, base + "/")
    browser.find_element(By.CSS_SELECTOR, "a.campaign-link").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "leaderboard"))
    first = browser.find_element(By.CSS_SELECTOR, "#leaderboard a.candidate-link")
    best_name = first.text
    first.click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "h1.candidate-name"))
    assert browser.find_element(By.CSS_SELECTOR, "h1.candidate-name").text == best_name
    # the best one was proposed from a seed: follow the parent link, then back to the campaign
    parent = browser.find_element(By.CSS_SELECTOR, "#parents a.parent-link")
    parent_name = parent.text
    parent.click()
    WebDriverWait(browser, 30).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "h1.candidate-name").text == parent_name
    )
    # the lineage tree's nodes are links to candidate pages
    with Archive(path, create=False) as archive:
        camp_id = archive.get_campaign(name).id
    _open(browser, f"{base}/campaign/{camp_id}")
    nodes = browser.find_elements(By.CSS_SELECTOR, 'svg[data-plot="lineage"] a.node-link')
    with Archive(path, create=False) as archive:
        assert len(nodes) == len(archive.candidates(campaign=camp_id))
        target = next(c for c in archive.candidates(campaign=camp_id) if c.generation == 2)
    node = next(n for n in nodes if n.get_attribute("data-id") == target.id)
    browser.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", node)
    WebDriverWait(browser, 30).until(lambda d: d.current_url.endswith(f"/candidate/{target.id}"))
    assert browser.find_element(By.CSS_SELECTOR, "h1.candidate-name").text == target.name
    assert _console_errors(browser) == []


def test_hostile_candidate_name_is_shown_as_text(browser, server):
    base, path, _ = server
    with Archive(path, create=False) as archive:
        hostile = next(c for c in archive.candidates() if c.name == HOSTILE_NAME)
    _open(browser, f"{base}/candidate/{hostile.id}")
    assert browser.find_element(By.CSS_SELECTOR, "h1.candidate-name").text == HOSTILE_NAME
    assert browser.title == f"agentmeta: {HOSTILE_NAME}"
    scripts = browser.execute_script("return Array.from(document.scripts).map(s => s.src)")
    assert scripts == [f"{base}/static/live.js"]
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0  # the thought's <img>
    _no_alert(browser)
    assert _console_errors(browser) == []


def test_pages_refresh_while_the_campaign_writes(browser, server):
    base, path, name = server
    with Archive(path, create=False) as archive:
        camp = archive.get_campaign(name)
        n_before = len(archive.candidates(campaign=camp.id))
    _open(browser, f"{base}/campaign/{camp.id}")
    rows = len(browser.find_elements(By.CSS_SELECTOR, "#leaderboard tr"))
    with Archive(path) as archive:  # another writer, as a running campaign would be
        archive.add(Candidate(kind="graph", name="late-arrival", source="{}", campaign=camp.id, status="ok"))
    WebDriverWait(browser, 30).until(
        lambda d: "late-arrival" in d.find_element(By.ID, "leaderboard").text
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#leaderboard tr")) == rows + 1
    with Archive(path, create=False) as archive:
        assert len(archive.candidates(campaign=camp.id)) == n_before + 1


def test_report_opens_offline_with_its_plots(browser, server, tmp_path: Path):
    from agentmeta.ui.report import write_report

    _, path, name = server
    out = write_report(path, name, tmp_path / "report.html")
    _console_errors(browser)
    _open(browser, out.as_uri())
    for plot in ("best-so-far", "scatter", "lineage", "graph-agent"):
        svg = browser.find_element(By.CSS_SELECTOR, f'svg[data-plot="{plot}"]')
        assert svg.size["width"] > 100
    # in-file navigation: a leaderboard link jumps to the candidate's section
    link = browser.find_element(By.CSS_SELECTOR, "#leaderboard a.candidate-link")
    target = link.get_attribute("href").split("#", 1)[1]
    link.click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith("#" + target))
    assert browser.find_element(By.ID, target).is_displayed()
    assert HOSTILE_NAME in browser.find_element(By.TAG_NAME, "body").text
    _no_alert(browser)
    assert _console_errors(browser) == []
