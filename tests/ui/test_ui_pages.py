"""The web app's pages and the report, through FastAPI's test client (no browser)."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agentmeta.archive import Archive
from agentmeta.conductor.core import ConductorResult, Turn
from agentmeta.models.types import Usage
from agentmeta.ui import svg, views
from agentmeta.ui.app import create_app
from agentmeta.ui.report import render_report, write_report
from tests.ui.conftest import HOSTILE_NAME, HOSTILE_THOUGHT

ESCAPED_NAME = "&lt;script&gt;alert(1)&lt;/script&gt;"


class _Tags(HTMLParser):
    """Collects start tags with their attributes and the ids defined."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        self.tags.append((tag, d))
        if d.get("id"):
            self.ids.add(str(d["id"]))


def tags(html: str) -> _Tags:
    p = _Tags()
    p.feed(html)
    return p


@pytest.fixture(scope="module")
def client(ui_archive):
    path, _ = ui_archive
    with Archive(path, create=False) as archive:
        yield TestClient(create_app(archive)), archive


def _scripts(html: str) -> list[str]:
    return [d.get("src") or "" for t, d in tags(html).tags if t == "script"]


def test_index_lists_the_campaign_with_its_verdict(client):
    c, archive = client
    r = c.get("/")
    assert r.status_code == 200
    camp = archive.get_campaign("ui-demo")
    assert f'href="/campaign/{camp.id}"' in r.text and "confirmed gain" in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'none'; script-src 'self'")
    assert _scripts(r.text) == ["/static/live.js"]


def test_campaign_page_has_leaderboard_plots_lineage_and_confirmation(client):
    c, archive = client
    camp = archive.get_campaign("ui-demo")
    html = c.get(f"/campaign/{camp.id}").text
    t = tags(html)
    plots = {d["data-plot"] for tag, d in t.tags if tag == "svg" and "data-plot" in d}
    assert plots == {"best-so-far", "scatter", "lineage"}
    assert {"leaderboard", "confirmation", "verdict"} <= t.ids
    cands = archive.candidates(campaign=camp.id)
    links = {d["href"] for tag, d in t.tags if tag == "a" and d.get("href", "").startswith("/candidate/")}
    assert {f"/candidate/{x.id}" for x in cands} <= links  # every candidate is reachable (lineage)
    # the best candidate (the hostile name) is shown escaped in the leaderboard and the verdict
    assert ESCAPED_NAME in html and HOSTILE_NAME not in html
    # the Pareto front: the scatter marks at least one point as on the front
    assert 'class="pt front-pt"' in html
    # the best-so-far line starts at the seeds' 0.50 and ends at 1.00
    assert re.search(r'class="best"', html)
    # the campaign's looks at its test split are listed, and P(better) is defined beside it
    assert "looks" in t.ids and "P(better): the share of 10,000 seeded paired-bootstrap" in html
    looks = archive.test_looks(campaign=camp.id)
    assert looks and all(f"<td>{x.created_at.strftime('%Y-%m-%d %H:%M')}</td>" in html for x in looks)


def test_candidate_page_shows_text_never_markup(client):
    c, archive = client
    cid = next(x.id for x in archive.candidates() if x.name == HOSTILE_NAME)
    html = c.get(f"/candidate/{cid}").text
    assert ESCAPED_NAME in html and HOSTILE_NAME not in html
    assert HOSTILE_THOUGHT not in html and "&lt;img src=x onerror=" in html
    assert "<b>claim</b>" not in html
    assert _scripts(html) == ["/static/live.js"]
    # the graph agent is drawn, and the per-sample table puts failures first
    assert 'data-plot="graph-agent"' in html
    rows = re.findall(r'<tr class="(fail|pass)">', html)
    assert rows and rows == sorted(rows, key=lambda x: x != "fail")


def test_failed_answer_with_markup_is_listed_first_as_text(client):
    c, archive = client
    seed = next(x for x in archive.candidates() if x.generation == 0 and x.name.startswith("Chain"))
    html = c.get(f"/candidate/{seed.id}").text
    first = html.index('<tr class="fail">')
    assert first < html.index('<tr class="pass">')
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in html and "<script>alert(3)" not in html
    # inputs and targets come from the suite (the archive keeps neither) beside the answer
    m = re.search(r"What is (\d) \+ 4\?</pre></td><td><pre class=\"answer\">[^<]*&lt;i&gt;(\d+)", html)
    assert m and int(m.group(2)) == int(m.group(1)) + 4


def test_compare_page_pairs_the_two_and_diffs_sources(client):
    c, archive = client
    conf = archive.get_campaign("ui-demo").state["confirmation"]
    r = c.get(f"/compare?a={conf['best']}&b={conf['best_seed']}")
    assert r.status_code == 200
    html = r.text
    assert "wins / losses / ties" in html and 'class="add"' in html and 'class="del"' in html
    assert ESCAPED_NAME in html and HOSTILE_NAME not in html
    d = archive.diff(conf["best"], conf["best_seed"])
    assert f"{d.wins} / {d.losses} / {d.ties}" in html
    # the other shared evaluations are offered
    assert "split=test&amp;stage=confirm" in html


def test_unknown_ids_are_a_404_page_with_the_reason(client):
    c, _ = client
    r = c.get("/candidate/doesnotexist")
    assert r.status_code == 404 and "no candidate with id" in r.text
    r = c.get("/campaign/<b>x")
    assert r.status_code == 404 and "no campaign &#39;&lt;b&gt;x&#39;" in r.text
    r = c.get("/no/such/page")
    assert r.status_code == 404 and "<h1>Error 404</h1>" in r.text


def test_change_token_moves_when_the_archive_is_written(tmp_path):
    from tests.ui.conftest import make_archive

    path, _ = make_archive(tmp_path, iterations=1)
    with Archive(path) as archive:
        c = TestClient(create_app(archive))
        before = c.get("/api/changes").json()["token"]
        assert c.get("/api/changes").json()["token"] == before  # reading changes nothing
        archive.update_campaign("ui-demo", state={"note": "x"})
        assert c.get("/api/changes").json()["token"] != before


def test_conductor_run_is_saved_and_shown_as_text(tmp_path):
    with Archive(tmp_path / "c.db") as archive:
        result = ConductorResult(
            answer="156",
            transcript=[
                Turn(role="conductor", content='Expert Mathematician:\n"""<script>alert(4)</script> 12*13?"""', round=1),
                Turn(role="expert", name="Mathematician", content="156", round=1),
            ],
            rounds=1,
            usage=Usage(calls=2, prompt_tokens=30, completion_tokens=9),
        )
        rid = archive.add_conductor_run(result, "What is 12*13?", models={"conductor": "mock"})
        c = TestClient(create_app(archive))
        index = c.get("/").text
        assert f'href="/conductor/{rid}"' in index and "What is 12*13?" in index
        html = c.get(f"/conductor/{rid}").text
        assert "round 1: expert Mathematician" in html and "&lt;script&gt;alert(4)" in html
        assert "<script>alert(4)" not in html
        assert archive.get_conductor_run(rid).usage.total_tokens == 39


def test_report_is_one_self_contained_file_without_script(ui_archive, tmp_path):
    path, name = ui_archive
    with Archive(path, create=False) as archive:
        out = write_report(archive, name, tmp_path / "r" / "report.html")
        html = out.read_text()
        t = tags(html)
        assert not [1 for tag, _ in t.tags if tag == "script"]
        assert any(tag == "meta" and "Content-Security-Policy" in (d.get("http-equiv") or "") for tag, d in t.tags)
        # nothing is fetched: no src or stylesheet pointing anywhere but data: URLs
        for tag, d in t.tags:
            for attr in ("src", "href"):
                if attr not in d:
                    continue
                v = d[attr] or ""
                if tag == "link" or attr == "src":
                    assert v.startswith("data:"), (tag, d)
                else:
                    assert v.startswith("#"), (tag, d)  # every link stays in the file...
                    assert v[1:] in t.ids, v  # ...and lands on a section that exists
        plots = [d["data-plot"] for tag, d in t.tags if tag == "svg" and "data-plot" in d]
        assert {"best-so-far", "scatter", "lineage", "graph-agent"} <= set(plots)
        assert ESCAPED_NAME in html and HOSTILE_NAME not in html
        assert "looks" in t.ids and "Looks at the test split" in html  # every look at the test split
        for c in archive.candidates(campaign=name):
            assert f'id="c-{c.id}"' in html
        # per-sample answers only for the detailed candidates
        assert render_report(archive, name, detailed=0).count("<table class=\"samples\">") < html.count(
            '<table class="samples">'
        )


def test_report_cli_writes_the_file_and_refuses_unknown_campaigns(ui_archive, tmp_path):
    path, name = ui_archive
    out = tmp_path / "report.html"
    cmd = [sys.executable, "-m", "agentmeta", "report", name, "--archive", path, "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 10_000 and "wrote" in r.stderr
    bad = subprocess.run(cmd[:4] + ["nope"] + cmd[5:], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no campaign 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    missing = tmp_path / "none.db"
    r = subprocess.run(
        [sys.executable, "-m", "agentmeta", "ui", "--archive", str(missing)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and "no archive" in r.stderr and not missing.exists()


def test_svg_plots_escape_names_and_mark_the_front():
    href = views.Links().candidate
    pts = [svg.Point("a", "<b>", 10, 0.5, seed=True), svg.Point("b", "x", 20, 0.9, on_front=True)]
    out = svg.scatter(pts, href)
    assert "<b>" not in out and "&lt;b&gt;" in out and out.count("front-pt") == 1
    tree = svg.lineage([svg.TreeNode("a", "<i>", 0, [], None), svg.TreeNode("b", "k", 1, ["a", "gone"], 1.0)], href)
    assert "&lt;i&gt;" in tree and tree.count('class="edge"') == 1  # a missing parent draws no edge
    assert "no full-stage" in svg.best_so_far([], href)


def test_links_are_escaped_for_ids_from_urls():
    links = views.Links()
    assert links.compare("a&b", "c d", "test") == "/compare?a=a%26b&b=c%20d&split=test"


def test_report_path_error_is_one_line(ui_archive, tmp_path):
    path, name = ui_archive
    blocker = tmp_path / "file"
    blocker.write_text("x")
    from agentmeta.errors import AgentMetaError

    with Archive(path, create=False) as archive, pytest.raises(AgentMetaError, match="cannot write the report"):
        write_report(archive, name, Path(blocker) / "report.html")
