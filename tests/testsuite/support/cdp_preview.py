#!/usr/bin/env python3
"""Drives headless Chromium over the DevTools protocol through `brief preview`: loads
the page at 375 px, clicks the 640 px switch, and checks the frame's width and content
each time, then rewrites the edition's title and waits (bounded) for the page to
reload by itself and show the new title. Uses the WebSocket and Page helpers of cdp_unsubscribe.py beside it.

usage: cdp_preview.py PREVIEW_URL EDITION_FILE NEW_TITLE [CHROMIUM]
Prints "ok: ..." and exits 0 when every step worked; exits non-zero saying what failed.
"""
import json, os, re, shutil, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdp_unsubscribe as cdp  # noqa: E402 (the helper sits beside this file)

TIMEOUT = 30.0


def evaluate(page, expression):
    result = page.call("Runtime.evaluate", expression=expression, returnByValue=True)
    if "exceptionDetails" in result:
        raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
    return result["result"].get("value")


FRAME = """JSON.stringify((function () {
  var f = document.getElementById('email');
  var d = f && f.contentDocument;
  return {
    frame: f ? f.getBoundingClientRect().width : null,
    inner: d ? d.defaultView.innerWidth : null,
    client: d ? d.documentElement.clientWidth : null,
    scroll: d ? d.documentElement.scrollWidth : null,
    body: d && d.body ? d.body.innerText : '',
    title: document.getElementById('title').textContent,
    size: (document.getElementById('size') || {}).textContent || ''
  };
})())"""


def load(page, url):
    page.events.clear()
    page.call("Page.navigate", url=url)
    page.wait_event("Page.loadEventFired")
    return json.loads(evaluate(page, FRAME))


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    url, edition, new_title = sys.argv[1], sys.argv[2], sys.argv[3]
    chromium = sys.argv[4] if len(sys.argv) > 4 else "/usr/bin/chromium"
    if not shutil.which(chromium):
        sys.exit(f"chromium not found at {chromium} (Debian package: chromium; scripts/test.sh installs it)")
    with cdp.chromium_page(chromium, 1400, 1000, mobile=False) as page:
        page.call("Runtime.enable")

        source = open(edition, encoding="utf-8").read()
        old_title = re.search(r'^title\s*=\s*"(.*)"\s*$', source, re.M).group(1)
        for width in (375, 640):
            if width == 375:
                state = load(page, f"{url}?width={width}")
            else:
                # The width switch on the page, pressed with a real mouse click.
                page.events.clear()
                page.click(f"#width-{width}")
                page.wait_event("Page.loadEventFired")
                state = json.loads(evaluate(page, FRAME))
            if state["frame"] is None:
                raise RuntimeError(f"no email frame at {width} px: {state}")
            # The frame's border adds 2 px to its box; the email is laid out in `width`.
            if state["inner"] != width or abs(state["frame"] - (width + 2)) > 0.5:
                raise RuntimeError(f"the frame is not {width} px wide: {state}")
            # Nothing sticks out sideways (the frame's own scroll bar may take some width).
            if state["scroll"] > state["client"]:
                raise RuntimeError(f"the email is wider than its {width} px frame: {state}")
            if old_title not in state["body"] or state["title"] != old_title:
                raise RuntimeError(f"the email at {width} px does not show {old_title!r}: {state['title']!r}")
            if "KB of Gmail" not in state["size"]:
                raise RuntimeError(f"no size line: {state}")

        # Mark this page load: a reload forgets the mark.
        evaluate(page, "window.briefBeforeChange = true")
        with open(edition, "w", encoding="utf-8") as f:
            f.write(re.sub(r'^title\s*=.*$', f'title = "{new_title}"', source, count=1, flags=re.M))
        deadline = time.time() + TIMEOUT
        while True:
            try:
                reloaded = evaluate(page, "window.briefBeforeChange === undefined && document.readyState === 'complete'")
            except RuntimeError:
                reloaded = False  # the page is between documents
            if reloaded:
                state = json.loads(evaluate(page, FRAME))
                if new_title in state["body"] and state["title"] == new_title:
                    break
            if time.time() > deadline:
                raise RuntimeError("the page did not reload with the new title within 30 s")
            time.sleep(0.1)
        if state["inner"] != 640:
            raise RuntimeError(f"the reload lost the chosen width: {state}")
        print(f"ok: frame at 375 and 640 px showed {old_title!r}; after the edit the page reloaded and showed {new_title!r}")


if __name__ == "__main__":
    try:
        main()
    except Exception as err:  # report, exit non-zero
        sys.exit(f"browser check failed: {err}")
