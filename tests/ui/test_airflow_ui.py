"""The Airflow web UI as a person uses it, in a real browser: Playwright driving Debian's chromium
(Playwright cannot download its own browser here).

It needs a running Airflow with this project's DAGs, a champion model and forecasts for the target
date, so it is skipped unless the environment names one:
  PRODML_UI_URL           e.g. http://127.0.0.1:8080 (`make compose-test` sets all of these;
                          `make ui-test` sets them for `make airflow` after `make demo`)
  PRODML_UI_PASSWORD      admin's password (PRODML_UI_USER, default admin)
  PRODML_UI_TARGET_DATE   the date batch_prediction is triggered for (its forecast partition must exist)
  PRODML_UI_ARTIFACTS     where the screenshots go (default artifacts/ui/)
  PRODML_UI_BROWSER       the chromium executable (default /usr/bin/chromium)
The DAGs expected are this working tree's dags/*.py. The tests run in file order and share one browser page: log in, DAG list, graph, trigger, run, log.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

URL = os.environ.get("PRODML_UI_URL", "").rstrip("/")
pytestmark = pytest.mark.skipif(not URL, reason="PRODML_UI_URL names no running Airflow (make ui-test / compose-test)")

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("PRODML_UI_ARTIFACTS", ROOT / "artifacts" / "ui"))
DAGS = sorted(p.stem for p in (ROOT / "dags").glob("*.py"))  # the running Airflow parses this folder
RUN_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("PRODML_UI_BROWSER", "/usr/bin/chromium"),
                                    args=["--no-sandbox"])  # root in CI: chromium's sandbox needs a user
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(30_000)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def state() -> dict:
    return {}


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def hover_tooltip(page, link, tooltip) -> str:
    """The list shows a DAG's description as the tooltip of its name. The pointer glides onto the
    name as a hand does (a one-step jump after scrolling sometimes opens no tooltip)."""
    link.scroll_into_view_if_needed()
    for _ in range(4):
        box = link.bounding_box()
        page.mouse.move(box["x"] - 30, box["y"] + box["height"] / 2)
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=5)
        try:
            tooltip.wait_for(timeout=3_000)
            return tooltip.inner_text().strip()
        except Exception:  # playwright's TimeoutError: glide onto it again
            page.mouse.move(0, 0)
    raise AssertionError(f"no tooltip on {link}")


def no_import_errors(page) -> None:
    # the dashboard and the DAG list show "Dag Import Error(s)" / "Plugin Import Error(s)" when there are any
    assert "Import Error" not in page.locator("body").inner_text()


def test_log_in(page):
    page.goto(URL + "/")
    page.wait_for_url(re.compile(r"/auth/login"))
    page.get_by_label("Username").fill(os.environ.get("PRODML_UI_USER", "admin"))
    page.get_by_label("Password").fill(os.environ["PRODML_UI_PASSWORD"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)
    page.get_by_text("Health").wait_for()
    page.wait_for_load_state("networkidle")
    shot(page, "01-home")
    no_import_errors(page)


def test_dag_list_shows_every_dag_with_its_description(page):
    page.goto(URL + "/dags")
    page.get_by_text(f"{len(DAGS)} Dags").wait_for()
    no_import_errors(page)
    descriptions = {}
    tooltip = page.get_by_role("tooltip")
    for dag_id in DAGS:
        descriptions[dag_id] = hover_tooltip(page, page.locator(f'a[href="/dags/{dag_id}"]'), tooltip)
        if dag_id == "static_training":
            shot(page, "02-dag-list")
        page.mouse.move(0, 0)
        tooltip.wait_for(state="hidden")
    for dag_id, text in descriptions.items():
        assert len(text) > 20, (dag_id, text)
    assert len(set(descriptions.values())) == len(DAGS)  # each DAG says what it is for


def test_graph_of_static_training(page):
    page.goto(URL + "/dags/static_training")
    page.get_by_role("button", name=re.compile(r"Show Graph")).click()
    nodes = page.locator(".react-flow__node")
    nodes.filter(has_text="train").first.wait_for()
    labels = " ".join(nodes.all_inner_texts())
    for task in ("find_data", "validate", "drift", "transform", "train", "promotion"):
        assert task in labels, labels
    shot(page, "03-graph-static_training")


def test_trigger_batch_prediction_with_a_target_date_and_see_it_succeed(page, state):
    target_date = os.environ["PRODML_UI_TARGET_DATE"]
    page.goto(URL + "/dags/batch_prediction")
    toggle = page.get_by_test_id("toggle-pause")
    if toggle.get_attribute("data-state") != "checked":  # paused: a run would wait forever
        toggle.click()
        page.wait_for_selector("[data-testid=toggle-pause][data-state=checked]")
    page.get_by_role("button", name="Trigger Dag").first.click()
    form = page.get_by_role("dialog")
    form.locator("#element_target_date").fill(target_date)
    shot(page, "04-trigger-form")
    form.get_by_role("button", name="Trigger", exact=True).click()
    page.wait_for_url(re.compile(r"/dags/batch_prediction/runs/[^/]+$"))
    state["run_url"] = page.url
    badge = page.get_by_test_id("header-card").get_by_test_id("state-badge")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (run_state := badge.inner_text().strip().lower()) not in ("success", "failed"):
        assert time.monotonic() < deadline, f"run still {run_state!r} after {RUN_TIMEOUT_S} s"
        page.wait_for_timeout(5_000)
        page.reload()
        badge.wait_for()
    shot(page, "05-run")
    assert run_state == "success"


def test_task_log_of_predict(page, state):
    assert "run_url" in state, "no run was triggered"
    page.goto(state["run_url"] + "/tasks/predict")
    log = page.get_by_text(re.compile(r"batch prediction: .*'target_date': '" + os.environ["PRODML_UI_TARGET_DATE"]))
    log.first.wait_for(timeout=60_000)
    shot(page, "06-task-log-predict")
    assert "'rows': " in log.first.inner_text()
