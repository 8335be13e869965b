"""The HTML report: self-contained, escaped, re-renderable, and it renders in a real (Debian) Chromium."""

from __future__ import annotations

import re
import shutil

import pytest

from lmm_concepts.cli import main
from lmm_concepts.report import Panels, render_html, write_report
from lmm_concepts.report.render import rerender
from tests._report_fixtures import EVIL, make_report_inputs


def test_page_is_self_contained_and_escaped(tmp_path):
    results, panels = make_report_inputs()
    html = render_html(results, panels)
    # nothing is fetched from anywhere: no http(s) or protocol-relative src/href, no external stylesheet/script
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", html, re.I)
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and not re.search(r"<script[^>]+src", html)
    # the hostile caption, word, attribute value and series name appear only escaped
    assert EVIL not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert html.count("<script>") == 1  # our own inline script only
    assert html.count("data:image/png;base64,") >= 6


def test_panels_round_trip_and_rerender(tmp_path):
    results, panels = make_report_inputs()
    path = write_report(tmp_path, results, panels)
    first = path.read_text()
    assert Panels.from_dict(Panels.to_dict(panels)) == panels
    path.unlink()
    main(["report", str(tmp_path)])
    assert path.read_text() == first
    with pytest.raises(FileNotFoundError, match="lmm-concepts demo"):
        rerender(tmp_path / "nowhere")
    with pytest.raises(SystemExit, match="lmm-concepts demo") as exit_:  # the CLI: one line, bad input
        main(["report", str(tmp_path / "nowhere")])
    assert exit_.value.code == 2
    (tmp_path / "results.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match=r"results.json holds a JSON list, not the object `lmm-concepts demo` writes"):
        main(["report", str(tmp_path)])


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver  # a dev dependency: the browser check is never skipped

    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("Debian chromium + chromium-driver are required (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def check_page_in_browser(driver, path) -> dict:
    """Open the page; fail on console errors or a grid image that did not load. Returns counts."""
    driver.get(path.resolve().as_uri())
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    state = driver.execute_script(
        """
        document.querySelectorAll('details').forEach(d => d.open = true);
        const imgs = Array.from(document.querySelectorAll('.grid img, .test-image img'));
        return {ready: document.body.getAttribute('data-report-ready'),
                pwned: window.__pwned === undefined ? null : window.__pwned,
                n_images: imgs.length,
                broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
                n_concepts: document.querySelectorAll('div.concept').length,
                n_svg: document.querySelectorAll('svg.plot').length,
                grid_height: Math.min(...Array.from(document.querySelectorAll('.grid')).map(g => g.getBoundingClientRect().height))};
        """
    )
    assert state["ready"] == "1", "the page's own script did not run"
    assert state["pwned"] is None, "a dataset string was executed as HTML/JS"
    assert state["n_images"] > 0 and not state["broken"], state
    assert state["grid_height"] > 0, "a grid has no rendered height"
    return state


def test_report_renders_in_headless_chromium(tmp_path, browser):
    results, panels = make_report_inputs()
    path = write_report(tmp_path, results, panels)
    state = check_page_in_browser(browser, path)
    assert state["n_concepts"] == 6  # 3 concepts x 2 methods
    assert state["n_images"] == 2 * (3 * 3 + 1)  # per method: 3 concepts x 3 MAS, plus 1 test image
    assert state["n_svg"] >= 6 + 1 + 1  # histograms, layer sweep, funnel


def test_caption_tokens_stay_text_in_chromium(tmp_path, browser):
    results, panels = make_report_inputs()
    path = write_report(tmp_path, results, panels)
    check_page_in_browser(browser, path)
    texts = browser.execute_script("""
        const select = document.querySelector('select.caption-concept');
        select.value = '1'; select.dispatchEvent(new Event('change'));
        return {tokens: Array.from(document.querySelectorAll('.caption-view')[0].querySelectorAll('span.tok'))
                          .map(s => [s.textContent, s.style.backgroundColor]),
                pwned: window.__pwned === undefined ? null : window.__pwned};""")
    assert texts["pwned"] is None
    tokens = texts["tokens"]
    assert [t for t, _ in tokens] == ["<image ×4>", "a", EVIL, "↵", "red"]  # shown as text, never parsed
    # concept 1 chosen: negative activation in red, positive in blue, zero transparent
    assert tokens[2][1].startswith("rgba(214, 39, 40") and tokens[3][1].startswith("rgba(31, 119, 180")
    assert tokens[1][1] in ("rgba(31, 119, 180, 0)", "rgba(0, 0, 0, 0)")
