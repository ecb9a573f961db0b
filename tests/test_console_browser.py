"""The console in a real headless Chromium: a curator's whole loop on People-Art paintings without a terminal
(sign in, upload, browse, train, watch, activate, describe, try a painting), and what other roles see.
Screenshots of each page go to $ARTDET_SCREENSHOTS (default: the test's folder)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from artdet.tools.bench.browser import browser_missing, chromium
from tests.conftest import PEOPLE_ART, TOKENS, ServerProcess, needs_people_art

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))

JOB_SECONDS = 600


@pytest.fixture(scope="module")
def server(tmp_path_factory, torch_home):
    root = tmp_path_factory.mktemp("console-browser")
    process = ServerProcess(root / "data", "--min-free-mb", "0", env={"TORCH_HOME": str(torch_home)}).start()
    yield process
    process.stop()


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def _wait(driver, condition, timeout: float = 30, what: str = "", errors_fail: bool = True):
    from selenium.webdriver.support.ui import WebDriverWait

    def check(_):
        notice = driver.find_element("id", "notice")
        if errors_fail and notice.is_displayed() and "error" in (notice.get_attribute("class") or ""):
            raise AssertionError(f"the page shows an error while waiting for {what}: {notice.text}")
        return condition()

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(check, message=what)


def _sign_in(driver, server: ServerProcess, role: str) -> None:
    driver.get(server.console_url)
    _wait(driver, lambda: driver.find_element("css selector", "body[data-ready=true]"), what="the page")
    driver.find_element("id", "token").send_keys(TOKENS[role])
    driver.find_element("css selector", "#sign-in-form button").click()
    _wait(driver, lambda: driver.find_element("id", "tabs").is_displayed(), what="signed in")


def _tab(driver, name: str) -> None:
    driver.find_element("css selector", f"#tabs button[data-tab={name}]").click()
    _wait(driver, lambda: driver.find_element("id", name).is_displayed(), what=f"the {name} page")


def _shot(driver, name: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000, f"screenshot {name} is empty"
    return path


def _people_art_zip(folder: Path) -> Path:
    """People-Art's training split zipped as an annotation tool exports it: the COCO file beside images/."""
    archive = folder / "people-art.zip"
    coco = json.loads((PEOPLE_ART / "train.json").read_text())
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("people-art/annotations.json", json.dumps(coco))
        for image in coco["images"]:
            zipped.write(PEOPLE_ART / image["file_name"], f"people-art/{image['file_name']}")
    return archive


@needs_people_art
def test_a_curator_does_the_whole_loop_in_the_browser(server, browser, tmp_path):
    from selenium.webdriver.support.ui import Select

    shots = Path(os.environ.get("ARTDET_SCREENSHOTS", tmp_path / "screenshots"))
    driver = browser
    _sign_in(driver, server, "admin")

    # upload: a zip from the file picker, a progress bar, the server's verdict
    driver.find_element("id", "upload-name").send_keys("people-art")
    driver.find_element("id", "upload-files").send_keys(str(_people_art_zip(tmp_path)))
    driver.find_element("css selector", "#upload-form button[type=submit]").click()
    _wait(driver, lambda: "uploaded people-art v1" in driver.find_element("id", "upload-status").text, 120,
          "the upload")
    assert "72 images" in driver.find_element("id", "upload-status").text
    _wait(driver, lambda: driver.find_elements("css selector", "tr[data-dataset='people-art:1']"), what="the row")

    # browse: the class chart and a page of thumbnails with their boxes
    driver.find_element("css selector", "tr[data-dataset='people-art:1'] button").click()
    _wait(driver, lambda: len(driver.find_elements("css selector", "#thumbs .thumb img")) == 12, 60, "thumbnails")
    _wait(driver, lambda: all(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
                              for img in driver.find_elements("css selector", "#thumbs img")), 60, "decoded")
    assert driver.find_elements("css selector", "#thumbs rect.gt-box"), "no annotated box drawn on the thumbnails"
    assert driver.find_element("css selector", "#class-chart rect[data-label=person]")
    assert "of 72" in driver.find_element("id", "page-info").text
    _shot(driver, "datasets", shots)

    # train: the form's choices come from the config schema; a short job from the (fabricated) COCO weights
    _tab(driver, "training")
    strategy = Select(driver.find_element("css selector", "#job-fields select[name=strategy]"))
    assert {o.text for o in strategy.options} == {"auto", "head-only", "two-stage", "full"}
    assert strategy.first_selected_option.text == "two-stage"
    for name, value in {"stage1_epochs": 1, "stage2_epochs": 1, "max_iters_per_epoch": 3, "batch_size": 2,
                        "max_size": 256}.items():
        driver.find_element("css selector", f"#job-fields input[name={name}]").send_keys(str(value))
    driver.find_element("css selector", "#job-form button[type=submit]").click()
    _wait(driver, lambda: driver.find_element("id", "job-detail").is_displayed(), what="the job view")
    _wait(driver, lambda: driver.find_element("id", "job-state").text == "running", 120, "the job to run")
    _wait(driver, lambda: driver.find_elements("css selector", "#loss-chart path[data-series=loss]"), 300,
          "the first loss values")
    _wait(driver, lambda: driver.find_element("id", "job-state").text == "succeeded", JOB_SECONDS, "succeeded")
    assert driver.find_element("css selector", "#map-chart path[data-series=mAP]")
    assert driver.find_element("css selector", "#map-chart path[data-series=before]")  # the baseline line
    assert "registered as people-art v1" in driver.find_element("id", "job-progress").text
    _shot(driver, "training", shots)

    # models: activate, per-class AP before/after, the strategy's reasons, a description the app will show
    _tab(driver, "models")
    _wait(driver, lambda: driver.find_elements("css selector", "tr[data-model='people-art:1']"), what="the model")
    driver.find_element("css selector", "tr[data-model='people-art:1']").click()
    assert driver.find_element("css selector", "#ap-chart rect[data-label=person]")
    assert "strategy two-stage" in driver.find_element("id", "model-strategy").text
    driver.find_element("id", "model-activate").click()
    _wait(driver, lambda: "(active)" in driver.find_element("id", "model-title").text, what="activation")
    description = driver.find_element("css selector", "#descriptions textarea[name=person]")
    description.clear()
    description.send_keys("A figure painted by the artist.")
    driver.find_element("css selector", "#descriptions-form button[type=submit]").click()
    _wait(driver, lambda: "saved" in driver.find_element("id", "notice").text, what="descriptions saved")
    _shot(driver, "models", shots)
    # the ONNX download the button makes: the registered file, whole, fetched with the page's token
    downloaded = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "api('GET', '/api/models/people-art/1/onnx').then(r => r.arrayBuffer())"
        ".then(b => done([b.byteLength, Array.from(new Uint8Array(b.slice(0, 2)))]), e => done(String(e)));")
    registered = (server.data_dir / "models" / "people-art" / "1" / "model.onnx").read_bytes()
    assert downloaded == [len(registered), list(registered[:2])], downloaded
    # what the server refuses, the page hears with the RPC's code: the active version cannot be deleted, and
    # there is no earlier version to roll back to
    refusals = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.all([api('DELETE', '/api/models/people-art/1'), api('POST', '/api/models/people-art/rollback')]"
        ".map(p => p.then(() => 'ok', e => [e.status, e.code]))).then(done);")
    assert refusals == [[409, "FAILED_PRECONDITION"], [409, "FAILED_PRECONDITION"]], refusals

    # try it: a painting in, labelled boxes with the curator's description out, the threshold slider
    _tab(driver, "try")
    painting = PEOPLE_ART / json.loads((PEOPLE_ART / "val.json").read_text())["images"][0]["file_name"]
    driver.execute_script("const s = document.getElementById('try-threshold'); s.value = 0.05;"
                          "s.dispatchEvent(new Event('input'));")
    driver.find_element("id", "try-file").send_keys(str(painting))
    _wait(driver, lambda: driver.find_element("id", "try-canvas").is_displayed(), 60, "the drawn painting")
    found = driver.find_elements("css selector", "#try-detections li[data-label=person]")
    assert found, driver.find_element("id", "try-detections").text
    assert "A figure painted by the artist." in found[0].text
    canvas = driver.execute_script("const c = document.getElementById('try-canvas'); return [c.width, c.height];")
    from PIL import Image
    assert tuple(canvas) == Image.open(painting).size
    _shot(driver, "try-it", shots)
    driver.execute_script("const s = document.getElementById('try-threshold'); s.value = 0.95;"
                          "s.dispatchEvent(new Event('input'));")
    assert len(driver.find_elements("css selector", "#try-detections li[data-label=person]")) < len(found) or \
        not found[0].is_displayed()

    _tab(driver, "health")
    _wait(driver, lambda: "people-art v1" in driver.find_element("css selector", "dd[data-field='models active']")
          .text, what="health")
    _shot(driver, "health", shots)
    # the whole loop went through the server's process, which still holds no torch (training ran in a worker)
    import psutil

    mapped = {m.path for m in psutil.Process(server.process.pid).memory_maps()}
    assert any("onnxruntime" in path for path in mapped)  # the check can see the libraries it loaded
    assert not [path for path in mapped if "libtorch" in path or "/torch/lib/" in path]


@pytest.mark.parametrize("role, tabs", [("client", {"models", "try", "health"}),
                                        ("annotator", {"datasets", "health"}),
                                        ("operator", {"datasets", "training", "models", "health"})])
def test_each_role_sees_only_the_controls_it_may_use(server, browser, role, tabs):
    _sign_in(browser, server, role)
    shown = {b.get_attribute("data-tab") for b in browser.find_elements("css selector", "#tabs button")
             if b.is_displayed()}
    assert shown == tabs
    if "models" in tabs:
        _tab(browser, "models")
        buttons = browser.find_elements("css selector", "#model-detail [data-roles=operator]")
        assert all((b.get_attribute("hidden") is not None) == (role != "operator") for b in buttons)
    if "datasets" in tabs:
        _tab(browser, "datasets")
        assert browser.find_element("id", "upload-form").is_displayed() == (role == "annotator")


def test_a_token_the_server_does_not_know_is_refused_and_kept_nowhere(server, browser):
    browser.get(server.console_url)
    _wait(browser, lambda: browser.find_element("css selector", "body[data-ready=true]"), what="the page")
    browser.find_element("id", "token").send_keys("not-a-token")
    browser.find_element("css selector", "#sign-in-form button").click()
    _wait(browser, lambda: "not known" in browser.find_element("id", "notice").text, what="the refusal",
          errors_fail=False)
    assert not browser.find_element("id", "tabs").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('artdet-token')") is None
    assert browser.get_cookies() == []
