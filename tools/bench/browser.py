"""Headless Chromium through Selenium for the console's browser tests and benchmark: Debian's `chromium` and
`chromium-driver` (tools/setup.sh installs them), never a browser download."""

from __future__ import annotations

import shutil

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver", "chromium-driver")


def browser_missing() -> str | None:
    """Why no headless browser can run here, or None when one can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'artdet[test]')"
    if not any(shutil.which(name) for name in CHROMIUM_NAMES):
        return "no Chromium (apt-get install chromium chromium-driver; tools/setup.sh does it as root)"
    if not any(shutil.which(name) for name in DRIVER_NAMES):
        return "no chromedriver (apt-get install chromium-driver; tools/setup.sh does it as root)"
    return None


def chromium(width: int = 1280, height: int = 1000):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = next(shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n))
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    service = Service(executable_path=next(shutil.which(n) for n in DRIVER_NAMES if shutil.which(n)))
    return webdriver.Chrome(options=options, service=service)
