"""The dashboard in a real headless Chromium: it renders offline (no outside requests, no
console errors), shows the same numbers as /metrics, refreshes live, and asks for the
key when it has none (a tenant's key gets that tenant's view). A screenshot is kept (set
HITRATE_SCREENSHOT_DIR to keep it somewhere you can look at it)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import time
from pathlib import Path

import openai
import pytest

from tests.conftest import ask
from tests.ops.conftest import KEY_A, KEY_B, MASTER, scrape, total, value

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                 "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/lib/chromium/chromedriver" if os.path.exists("/usr/lib/chromium/chromedriver") else None)
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs chromium and chromedriver (scripts/test_deps.sh installs Debian's "
    "chromium and chromium-driver); not installable here")


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1400,1200",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def models(upstream):
    return [{"name": "gpt-4o-mini", "model": "sim-model", "api_base": upstream.api_base},
            {"name": "claude-sonnet", "model": "claude-sonnet-4-20250514",
             "api_base": upstream.api_base}]


def traffic(client: openai.OpenAI) -> None:
    for model in ("gpt-4o-mini", "claude-sonnet"):
        for i in range(4):
            namespace = {"cache": {"namespace": "support" if i % 2 else "search"}}
            ask(client, f"question {i} for {model}", model=model, extra_body=namespace)
            for _ in range(i):
                ask(client, f"question {i} for {model}", model=model, extra_body=namespace)
    ask(client, "no cache please", model="gpt-4o-mini", extra_body={"cache": {"no-cache": True}})
    with pytest.raises(openai.InternalServerError):
        ask(client, "boom [[error:500]]", model="gpt-4o-mini")


def shown(driver, testid: str) -> str:
    # One script call: the page re-renders parts of itself on every poll.
    return driver.execute_script(
        "const e = document.querySelector(`[data-testid='${arguments[0]}']`);"
        "return e ? e.textContent.trim() : null", testid)


ROWS = """return [...document.querySelectorAll(`#${arguments[0]} tbody tr`)].map(tr => ({
    name: tr.dataset.name,
    hits: tr.querySelector('[data-testid=hits]').textContent,
    cost: tr.querySelector('[data-testid=cost]').textContent}))"""


def number(text: str) -> float:
    return float(re.sub(r"[^0-9.\-]", "", text))


def decimals(text: str) -> int:
    digits = re.sub(r"[^0-9.]", "", text)
    return len(digits.split(".")[1]) if "." in digits else 0


def assert_shown(text: str, expected: float, scale: float = 1.0) -> None:
    """`text` is `expected` (in units of `scale`) as rounded for display."""
    assert abs(number(text) * scale - expected) <= 0.5 * 10 ** -decimals(text) * scale + 1e-12, \
        (text, expected)


def seconds(text: str) -> tuple[float, float]:
    units = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}
    scale = units[text.split()[-1]]
    return number(text.split()[0]), scale


def load(driver, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.body.dataset.loaded === 'true'"))


def test_dashboard_matches_metrics(make_gateway, upstream, browser, tmp_path):
    gateway = make_gateway(models=models(upstream), master_key=MASTER,
                           keys=[{"key": KEY_A, "tenant": "a"}],
                           metrics={"history_interval": 0.2})
    traffic(gateway.client(api_key=KEY_A))
    time.sleep(0.5)  # a history sample or two
    metrics = scrape(gateway)
    load(browser, f"{gateway.url}/dashboard?interval=500#key={MASTER}")
    assert MASTER not in browser.current_url  # the key left the address bar

    requests = total(metrics, "hitrate_requests_total")
    outcomes = {o: total(metrics, "hitrate_requests_total", outcome=o)
                for o in ("hit", "miss", "bypass", "error")}
    assert outcomes == {"hit": 12, "miss": 8, "bypass": 1, "error": 1}
    assert number(shown(browser, "kpi-requests")) == requests == 22
    for outcome, n in outcomes.items():
        assert number(shown(browser, f"outcome-{outcome}")) == n
    assert_shown(shown(browser, "kpi-hit-rate"), outcomes["hit"] / requests * 100)
    cost = total(metrics, "hitrate_cost_saved_usd_total")
    assert cost > 0
    assert_shown(shown(browser, "kpi-cost-saved"), cost)
    tokens = total(metrics, "hitrate_tokens_saved_total")
    assert number(shown(browser, "kpi-tokens-saved")) == tokens > 0
    latency_text = shown(browser, "kpi-time-saved")
    assert_shown(latency_text.split()[0], total(metrics, "hitrate_latency_saved_seconds_total"),
                 scale=seconds(latency_text)[1])
    assert number(shown(browser, "backend-entries")) == value(
        metrics, "hitrate_cache_entries", backend="memory") == 9  # no-cache still stores
    assert number(shown(browser, "cache-stores")) == value(metrics, "hitrate_cache_stores_total")
    assert number(shown(browser, "backend-errors")) == 0
    assert shown(browser, "backend-name") == "memory"
    assert shown(browser, "backend-health") == "Healthy"

    # Top models and namespaces: every row's hits and money equal the labelled series.
    for table, label in (("models", "model"), ("namespaces", "namespace")):
        rows = browser.execute_script(ROWS, table)
        assert len(rows) == 2
        for row in rows:
            name = row["name"]
            assert number(row["hits"]) == total(metrics, "hitrate_model_hits_total",
                                                **{label: name})
            assert_shown(row["cost"], total(metrics, "hitrate_cost_saved_usd_total",
                                            **{label: name}))
        if table == "models":  # the claude model is dearer: it leads "by money saved"
            assert rows[0]["name"] == "claude-sonnet"
    assert browser.execute_script("return document.querySelectorAll('#chart svg path').length")
    assert browser.execute_script("return document.querySelectorAll('#donut circle').length") >= 4

    # Self-contained: nothing but same-origin requests, no console errors (CSP included).
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(gateway.url) for u in urls), urls
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors

    shot = Path(os.environ.get("HITRATE_SCREENSHOT_DIR", tmp_path)) / "dashboard.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 1000 and height >= 800 and len(data) > 50_000  # a real, non-blank page

    # Live: new traffic shows up without a reload.
    client = gateway.client(api_key=KEY_A)
    ask(client, "question 3 for gpt-4o-mini", model="gpt-4o-mini",
        extra_body={"cache": {"namespace": "support"}})
    WebDriverWait(browser, 10).until(lambda d: shown(d, "kpi-requests") == "23")
    assert shown(browser, "outcome-hit") == "13"


def test_dashboard_asks_for_a_key(make_gateway, upstream, browser):
    gateway = make_gateway(models=models(upstream), master_key=MASTER,
                           keys=[{"key": KEY_A, "tenant": "a"}])
    browser.get(f"{gateway.url}/dashboard")
    login = browser.find_element(By.ID, "login")
    WebDriverWait(browser, 10).until(lambda d: "show" in login.get_attribute("class"))
    field = browser.find_element(By.ID, "login-key")
    field.send_keys("sk-not-a-key-000")
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    WebDriverWait(browser, 10).until(
        lambda d: "Wrong key" in d.find_element(By.ID, "login-err").text)
    field.clear()
    field.send_keys(MASTER)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    WebDriverWait(browser, 10).until(
        lambda d: d.execute_script("return document.body.dataset.loaded === 'true'"))
    assert "show" not in login.get_attribute("class")
    assert shown(browser, "kpi-requests") == "0"


def visible(driver, element_id: str) -> bool:
    return driver.execute_script(
        "return !document.getElementById(arguments[0]).classList.contains('hidden')", element_id)


def test_dashboard_tenant_views(make_gateway, upstream, browser):
    gateway = make_gateway(models=models(upstream), master_key=MASTER,
                           keys=[{"key": KEY_A, "tenant": "a"}, {"key": KEY_B, "tenant": "b"}])
    traffic(gateway.client(api_key=KEY_A))  # 22 requests, 12 hits
    b = gateway.client(api_key=KEY_B)
    for _ in range(3):
        ask(b, "b's question", model="gpt-4o-mini")

    # The admin: every tenant in a table and a selector; picking one shows its numbers.
    load(browser, f"{gateway.url}/dashboard?interval=500#key={MASTER}")
    WebDriverWait(browser, 10).until(lambda d: visible(d, "tenants-card"))
    rows = browser.execute_script("""return [...document.querySelectorAll('#tenants tbody tr')]
        .map(tr => [tr.dataset.name, tr.querySelector('[data-testid=requests]').textContent])""")
    assert rows == [["a", "22"], ["b", "3"]]
    assert shown(browser, "kpi-requests") == "25"
    select = browser.find_element(By.ID, "tenant-select")
    assert [o.get_attribute("value") for o in select.find_elements(By.TAG_NAME, "option")] \
        == ["", "a", "b"]
    select.find_element(By.CSS_SELECTOR, "option[value=b]").click()
    WebDriverWait(browser, 10).until(lambda d: shown(d, "kpi-requests") == "3")
    assert shown(browser, "outcome-hit") == "2"
    assert not visible(browser, "tenants-card") and not visible(browser, "backend-card")
    select.find_element(By.CSS_SELECTOR, "option[value='']").click()
    WebDriverWait(browser, 10).until(lambda d: shown(d, "kpi-requests") == "25")

    # A tenant's key: its own view, no selector, no gateway-wide facts, nobody else's names.
    browser.execute_script("sessionStorage.clear()")
    # (another query string: a fragment-only change would not reload the page)
    load(browser, f"{gateway.url}/dashboard?interval=400#key={KEY_B}")
    WebDriverWait(browser, 10).until(lambda d: shown(d, "tenant-name") == "b")
    assert shown(browser, "kpi-requests") == "3"
    assert not visible(browser, "tenant-select") and not visible(browser, "backend-card")
    assert not visible(browser, "tenants-card")
    namespaces = browser.execute_script(ROWS, "namespaces")
    assert [row["name"] for row in namespaces] == ["default"]  # not a's support/search
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
