"""`snakemake --report` gives one file that opens in a browser and shows the evaluation table
and the training curves."""

from __future__ import annotations

import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS, snakemake


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not installed")
def test_report_shows_the_evaluation_table_and_the_curves(tiny_run, tmp_path):
    from playwright.sync_api import sync_playwright

    report = tmp_path / "report.html"
    snakemake(tiny_run, f"--report={report}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
            ("file:", "data:", "blob:")) else route.abort())  # the report must be self-contained
        page.goto(report.as_uri())
        shown = {}
        for category, item in [("Evaluation", "runs/llama-tiny/outputs/eval.html"),
                               ("Training", "runs/llama-tiny/finetuned_llama-tiny/training_curves.png")]:
            page.goto(report.as_uri())
            page.get_by_text(category, exact=True).click()
            link = page.locator("tr", has_text=item).locator("a[iconname=eye]")
            assert link.count() == 1, f"{item} is not in the report's {category}"
            link.click()
            page.wait_for_timeout(1000)
            shown[category] = {
                "html": "".join(frame.content() for frame in page.frames),
                # the widest image on show: the curves are 900 px wide, icons are small
                "img": max([f.evaluate("() => Math.max(0, ...[...document.images].map("
                                       "i => i.naturalWidth))") for f in page.frames]),
            }
        assert "<td>exact_match</td>" in shown["Evaluation"]["html"]  # the table, rendered
        assert shown["Training"]["img"] >= 800 > shown["Evaluation"]["img"]
        page.screenshot(path=str(tmp_path / "report.png"))
        browser.close()
