"""``fluxflow-app`` in a real browser: Selenium drives headless Chromium through the Generate tab (type a
prompt, click Generate, see the images) and the Runs tab (table, curves, grids), with a screenshot of each tab
in the test's folder and, when ``FLUXFLOW_DOC_SCREENSHOTS=DIR`` is set, in DIR (the docs' screenshots):

    FLUXFLOW_DOC_SCREENSHOTS=docs/img pytest -m browser tests/integration/test_app_browser.py
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from app_helpers import make_runs, serve
from browser import CHROMIUM, FLAGS, NO_CHROMIUM
from PIL import Image

CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None:
    pytest.skip(NO_CHROMIUM, allow_module_level=True)
if CHROMEDRIVER is None:
    pytest.skip("chromedriver is not installed (Debian package chromium-driver)", allow_module_level=True)
pytest.importorskip("gradio", reason="the app extra: pip install 'fluxflow[app]'")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")]
WINDOW = (1200, 900)
PROMPT = "a red circle in the top left on a white background"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    paths = make_runs(tmp_path_factory.mktemp("app"))
    demo = serve("--runs", str(paths["runs"]), "--model", str(paths["model"]))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--window-size={WINDOW[0]},{WINDOW[1]}", "--disable-dev-shm-usage"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
        driver.set_window_size(2 * WINDOW[0] - inner[0], 2 * WINDOW[1] - inner[1])  # the page gets WINDOW
        driver.get(demo.local_url)
        yield driver
    finally:
        driver.quit()
        demo.close()


def shot(driver, name: str, folder: Path) -> Path:
    """A screenshot of the window into ``folder``, and into ``$FLUXFLOW_DOC_SCREENSHOTS`` when set."""
    path = folder / name
    driver.execute_script("window.scrollTo(0, 0)")
    assert driver.save_screenshot(str(path))
    if os.environ.get("FLUXFLOW_DOC_SCREENSHOTS"):  # a 256-colour copy: a fifth of the bytes, for the docs
        docs = Path(os.environ["FLUXFLOW_DOC_SCREENSHOTS"])
        docs.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image.convert("RGB").quantize(256).save(docs / name, optimize=True)
    with Image.open(path) as image:
        assert image.size == WINDOW
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50  # drawn, not a blank page
    return path


def loaded_images(driver, selector: str) -> list:
    return [img for img in driver.find_elements(By.CSS_SELECTOR, selector)
            if driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)]


def test_generate_shows_the_images(page, tmp_path):
    wait = WebDriverWait(page, 60)
    wait.until(lambda d: "loaded on" in d.find_element(By.ID, "model-status").text)  # on opening the page
    page.find_element(By.CSS_SELECTOR, "#prompt textarea").send_keys(PROMPT)
    page.find_element(By.ID, "generate").click()
    images = wait.until(lambda d: loaded_images(d, "#gallery img"))
    assert page.execute_script("return arguments[0].naturalWidth", images[0]) == 64  # the trained size
    assert "seed 0" in page.find_element(By.ID, "gallery").text and "Traceback" not in page.page_source
    shot(page, "app_generate.png", tmp_path)


def test_runs_shows_the_table_curves_and_grids(page, tmp_path):
    page.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Runs')]").click()
    wait = WebDriverWait(page, 60)
    wait.until(lambda d: "runs/shapes" in d.find_element(By.ID, "runs-table").text)
    assert "runs/staged/stages/1-vae" in page.find_element(By.ID, "runs-table").text
    wait.until(lambda d: loaded_images(d, "#grid-flow img") and loaded_images(d, "#grid-vae img"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#curve-0 canvas, #curve-0 svg.marks"))
    assert "step 30" in page.find_element(By.ID, "run-about").text
    shot(page, "app_runs.png", tmp_path)
