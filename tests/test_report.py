"""report.html in a real headless browser (Debian's chromium + chromedriver, selenium):
sorting and filtering change the visible rows."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from molvae import candidates, chem, report
from molvae.config import ScoreConfig

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def page(tmp_path_factory, test_smiles):
    """A report of 40 ranked test molecules (5 marked as training molecules), open in
    headless Chromium."""
    if not (CHROMIUM and DRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium "
                    "chromium-driver; .ci/run installs them when it runs as root)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (dev extra)")
    smiles = [chem.canonical_smiles(s) for s in test_smiles[:38]] + ["O=C1NC(=S)SC1=Cc1ccccc1",
                                                                    "CCCCCCCCCCCCCCCCCCCCCCCCCCCC"]
    df = pd.DataFrame({"smiles": smiles, "valid": True, "source": "test"})
    df = candidates.annotate(df, ScoreConfig(known_molecules=None), workers=1)
    df["novel"] = df.index > 4  # the first five known (without a model, novelty is unknown)
    ranked = candidates.rank(df)
    table = candidates.with_ranks(df, ranked, candidates.top_set(ranked, 10))
    path = report.html_report(table, tmp_path_factory.mktemp("report") / "report.html",
                              summary={"molecules generated and scored": 40.0, "novel": 0.875})
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-sync",
                 "--disable-component-update"):
        opts.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.get(path.as_uri())
    yield driver, table
    driver.quit()


def _visible(driver) -> list:
    return [r for r in driver.find_elements("css selector", "#t tbody tr") if r.is_displayed()]


def _col(driver, name: str) -> int:
    heads = [h.text for h in driver.find_elements("css selector", "#t thead tr:first-child th")]
    return heads.index(name)


def test_report_filters_and_sorts_in_a_browser(page):
    driver, table = page
    ranked = table[table["rank"].notna()]
    shown_by_default = int((ranked.pass_all & ranked.novel).sum())
    assert len(_visible(driver)) == shown_by_default  # failing and known hidden by default
    driver.find_element("id", "failing").click()
    driver.find_element("id", "known").click()
    assert len(_visible(driver)) == len(table)  # every molecule reachable
    # sorting by score: ascending on the first click, descending on the second
    score = _col(driver, "score")
    header = driver.find_elements("css selector", "#t thead tr:first-child th")[score]
    header.click()
    values = [float(r.find_elements("tag name", "td")[score].get_attribute("data-v"))
              for r in _visible(driver)]
    assert values == sorted(values) and values[0] < values[-1]
    header.click()
    values = [float(r.find_elements("tag name", "td")[score].get_attribute("data-v"))
              for r in _visible(driver)]
    assert values == sorted(values, reverse=True)
    # a per-column range filter and the search box narrow the rows
    box = driver.find_element("css selector", f".cf[data-col='{score}']")
    box.send_keys(">0.7")
    high = len(_visible(driver))
    assert high == int((table.score > 0.7).sum()) and 0 < high < len(table)
    box.clear()
    box.send_keys("\b")  # an input event after clear()
    search = driver.find_element("id", "q")
    search.send_keys("ene_rhod")  # the PAINS alert in the rhodanine's reasons
    rows = _visible(driver)
    assert len(rows) == 1 and "ene_rhod_A(235)" in rows[0].text
    search.clear()
    search.send_keys("\b")
    driver.find_element("id", "toponly").click()
    assert len(_visible(driver)) == int(table.top.sum()) == 10
    # readable numbers and a legend
    text = driver.find_element("tag name", "body").text
    assert "molecules generated and scored" in text and "40" in text
    assert "What the columns mean" in text
