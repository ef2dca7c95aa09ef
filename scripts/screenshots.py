"""Screenshots for the README: a run's MLflow page and its report.html, in headless Chromium.

    python scripts/screenshots.py runs/<run name> [--store sqlite:///mlflow.db] [--out docs/screenshots]

Starts `mlflow ui` on the store (port 5123), opens the run that logged the folder, waits for
the page to render, and saves PNGs under 300 KB (palette images).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

PORT = 5123
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-sync", "--disable-component-update",
         "--window-size=1500,1100")


def browser() -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in FLAGS:
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


def save(driver: webdriver.Chrome, path: Path, colors: int = 128) -> None:
    raw = path.with_suffix(".raw.png")
    driver.save_screenshot(str(raw))
    img = Image.open(raw).convert("RGB")
    img.quantize(colors=colors).save(path, optimize=True)
    raw.unlink()
    print(f"{path}: {path.stat().st_size / 1024:.0f} KB")


def click(driver: webdriver.Chrome, xpath: str) -> bool:
    """Click the first element matching ``xpath``; False when there is none."""
    found = driver.find_elements("xpath", xpath)
    if found:
        try:
            found[0].click()
            return True
        except Exception:  # hidden or covered: the screenshot is taken anyway
            return False
    return False


def tidy(driver: webdriver.Chrome) -> None:
    """The run page without the assistant side panel."""
    click(driver, "//*[contains(normalize-space(.), 'MLflow Assistant')]/following::button"
                  "[contains(@aria-label, 'lose')][1]")
    time.sleep(2)


def wait_for_server(url: str, seconds: float = 90) -> None:
    end = time.time() + seconds
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    sys.exit(f"mlflow ui did not answer at {url}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--store", default="sqlite:///mlflow.db")
    ap.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = ap.parse_args()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(args.store)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        f"tags.out_dir = '{args.run_dir}'")
    if not runs:
        sys.exit(f"no MLflow run in {args.store} logged {args.run_dir}")
    run = runs[0]
    args.out.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
                               args.store, "--port", str(PORT)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = browser()
    try:
        base = f"http://127.0.0.1:{PORT}"
        wait_for_server(base)
        driver.get(base)
        time.sleep(8)
        click(driver, "//*[normalize-space(text())='Model training']")  # the UI's mode
        time.sleep(2)
        driver.get(f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
        time.sleep(12)  # the React app renders the run page
        tidy(driver)
        save(driver, args.out / "mlflow_run.png")
        driver.get(f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
                   "/artifacts")
        time.sleep(6)
        tidy(driver)
        for name in ("images", "top_candidates.png"):
            click(driver, f"//*[normalize-space(text())='{name}']")
            time.sleep(3)
        save(driver, args.out / "mlflow_images.png")
        driver.get((args.run_dir / "report.html").resolve().as_uri())
        time.sleep(3)
        save(driver, args.out / "report.png")
    finally:
        driver.quit()
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps({"run_id": run.info.run_id}))


if __name__ == "__main__":
    main()
