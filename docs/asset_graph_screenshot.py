"""Take docs/dagster-asset-graph.png: the code location's asset graph, every group expanded.

    uv run python -m cryptolake.replay --port 8765 &
    CRYPTOLAKE_LAKE=/tmp/demo/lake CRYPTOLAKE_API_URL=http://127.0.0.1:8765/api/v3 \\
        uv run dagster asset materialize -m cryptolake.orchestration --select '*'
    uv run dagster-webserver -m cryptolake.orchestration -p 3300 &
    python docs/asset_graph_screenshot.py http://127.0.0.1:3300 docs/dagster-asset-graph.png

Needs Playwright (`pip install playwright pillow`, outside the project) and Debian's
Chromium at /usr/bin/chromium; the crop box fits Dagster 1.13's layout of this graph.
"""

import sys

from PIL import Image
from playwright.sync_api import sync_playwright

W, H = 2000, 1700
ZOOM_OUTS = 6
CROP = (598, 286, 1669, 1644)


def main(base_url: str, out: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": W, "height": H})
        page.goto(f"{base_url}/asset-groups")
        page.wait_for_timeout(6000)
        if (skip := page.get_by_role("button", name="Skip")).count():
            skip.first.click()  # the community sign-up dialog of a new instance
        page.get_by_text("Hide navigation").click()
        jump = page.get_by_placeholder("Jump to…").bounding_box()
        assert jump is not None
        page.mouse.click(jump["x"] + jump["width"] + 25, jump["y"] + jump["height"] / 2)
        page.mouse.click(W // 2, 300)
        page.keyboard.press("Alt+KeyE")  # expand all groups
        page.wait_for_timeout(2500)
        for _ in range(ZOOM_OUTS):
            page.mouse.click(W - 28, H - 150)
            page.wait_for_timeout(700)
        page.mouse.move(W // 2, H // 2)
        page.mouse.down()
        page.mouse.move(W // 2 + 100, H // 2 + 100, steps=10)
        page.mouse.up()
        page.wait_for_timeout(1000)
        page.screenshot(path=out)
        browser.close()
    Image.open(out).crop(CROP).save(out, optimize=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
