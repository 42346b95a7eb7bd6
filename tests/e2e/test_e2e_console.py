"""The console in Debian's headless Chromium (Playwright, no browser download) against the real
stack: an ingress with an admin key, bound to the session's router and vLLM tiers.

Screenshots go to a temp dir, or to docs/img/ with TIERSERVE_SCREENSHOTS=1 (the README's).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed "
                                 "(scripts/setup.sh installs it)")]

REPO = Path(__file__).resolve().parents[2]
ADMIN = "console-admin-e2e"
APP, PREFIX = "console-e2e", "/console-e2e"
HARD = ("Prove step by step that the square root of 2 is irrational. " * 3).strip()


@pytest.fixture(scope="module")
def console(tierserve_stack):
    from ray import serve

    from app.config import load_config
    from deployments.ingress import Ingress

    config = load_config("local-cpu")
    tiers = {t.name: tierserve_stack.handle(t.deployment_name) for t in config.tiers}
    router = tierserve_stack.handle("router")
    app = serve.deployment(Ingress, name="console-ingress", ray_actor_options={
        "num_cpus": 0, "runtime_env": {"env_vars": {"TIERSERVE_ADMIN_KEYS": ADMIN}}}
    ).bind(config, router, tiers)
    serve.run(app, name=APP, route_prefix=PREFIX)
    try:
        yield tierserve_stack.base_url + PREFIX
    finally:
        serve.delete(APP)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"],
                              headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, console):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(console + "/console")
    try:
        yield pg
    finally:
        context.close()


def shot(page, name: str, tmp_path: Path) -> None:
    out = REPO / "docs" / "img" if os.environ.get("TIERSERVE_SCREENSHOTS") else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / name), full_page=True)


def connect(page, key: str = ADMIN) -> None:
    page.fill("#admin-key", key)
    page.click("#auth button[type=submit]")


def send(page, prompt: str, model: str = "auto", max_tokens: int = 48, compare: str | None = None):
    """Send from the playground; the newest exchange's message boxes once all are finished."""
    page.select_option("#model", model)
    page.set_checked("#side-by-side", compare is not None)
    if compare:
        page.select_option("#compare-model", compare)
    page.fill("#max-tokens", str(max_tokens))
    page.fill("#prompt", prompt)
    before = page.locator("#conversation .exchange").count()
    page.click("#send")
    page.wait_for_function(f"document.querySelectorAll('#conversation .exchange').length > {before}")
    row = page.locator("#conversation .exchange").first
    page.wait_for_function("() => [...document.querySelector('#conversation .exchange').children]"
                           ".every(m => m.dataset.state !== 'streaming')", timeout=180_000)
    return [row.locator(".msg").nth(i) for i in range(row.locator(".msg").count())]


def meta(msg, field: str) -> str:
    return msg.locator(f".meta .{field}").inner_text()


def test_wrong_admin_key_is_refused(page, console):
    connect(page, "not-the-admin-key")
    page.wait_for_selector("#auth-error:not([hidden])")
    assert "401" in page.inner_text("#auth-error") and "admin key" in page.inner_text("#auth-error")
    assert page.locator("#tiers tbody tr").count() == 0
    r = httpx.get(console + "/console/api/overview", headers={"authorization": "Bearer nope"}, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_console_shows_both_tiers_ready(page, tmp_path):
    connect(page)
    for tier in ("fast", "reasoning"):
        row = page.locator(f"#tiers tr[data-tier={tier}]")
        row.locator("[data-testid=tier-status]").filter(has_text="ready").wait_for()
        assert "1 running" in row.locator("[data-testid=replicas]").inner_text()
        assert row.locator("[data-testid=routing-state]").inner_text() == "active"
        assert row.locator("[data-testid=nodes]").inner_text() not in ("", "–")  # replicas per node
    # vLLM's gauges reach the page (Ray exports them every few seconds).
    page.locator("#tiers tr[data-tier=fast] [data-testid=engine]").filter(has_text="running").wait_for()
    assert page.locator("#auth-error").is_hidden()
    routing = page.inner_text("#routing-config")  # the ladder and thresholds the router uses
    assert "fast → reasoning (≥ " in routing and "as the router uses them" in routing, routing
    shot(page, "console.png", tmp_path)


def test_playground_streams_and_shows_tier_and_reason(page):
    connect(page)
    page.locator("#tiers tr[data-tier=fast]").wait_for()
    (msg,) = send(page, "Hello there", max_tokens=200)
    assert msg.get_attribute("data-state") == "done", msg.inner_text()
    assert meta(msg, "tier") == "fast" and meta(msg, "reason").startswith("rule:")
    assert meta(msg, "ttft").endswith(" ms") and int(meta(msg, "tokens")) > 1
    # Token by token: one content event per token (a token may decode to no text yet), over
    # several network reads (the tier sends its first chunk alone, the rest every few ms),
    # each rendered as it came.
    assert 1 < int(msg.get_attribute("data-events")) <= int(meta(msg, "tokens"))
    assert int(msg.get_attribute("data-reads")) > 1
    rid = meta(msg, "request")
    # The decision appears in the console's recent decisions, with its tier and TTFT.
    row = page.locator(f"#decisions tr[data-request-id='{rid}']")
    row.wait_for(timeout=30_000)
    assert "fast" in row.inner_text()


def test_auto_hard_prompt_lands_on_reasoning_side_by_side(page, tmp_path):
    from app.config import load_config

    fast_model = load_config("local-cpu").tier("fast").served_model_name
    connect(page)
    page.locator("#tiers tr[data-tier=fast]").wait_for()
    auto, pinned = send(page, HARD, compare=fast_model)
    assert auto.get_attribute("data-state") == "done" and pinned.get_attribute("data-state") == "done"
    assert meta(auto, "tier") == "reasoning" and meta(auto, "reason") != "model"
    assert meta(pinned, "tier") == "fast" and meta(pinned, "reason") == "model"
    shot(page, "console-playground.png", tmp_path)


def test_suspend_and_resume_a_tier(page, console):
    connect(page)
    row = page.locator("#tiers tr[data-tier=reasoning]")
    row.locator("[data-testid=routing-state]").filter(has_text="active").wait_for()
    try:
        row.locator("button[data-action=suspend]").click()
        row.locator("[data-testid=routing-state]").filter(has_text="suspended").wait_for()
        (msg,) = send(page, HARD)
        assert meta(msg, "tier") == "fast", "auto traffic must avoid a suspended tier"
        row.locator("button[data-action=resume]").click()
        row.locator("[data-testid=routing-state]").filter(has_text="active").wait_for()
        (msg,) = send(page, HARD)
        assert meta(msg, "tier") == "reasoning"
    finally:  # the router is the session's: never leave a tier suspended
        httpx.post(console + "/console/api/tiers/reasoning/resume",
                   headers={"authorization": f"Bearer {ADMIN}"}, timeout=30)
