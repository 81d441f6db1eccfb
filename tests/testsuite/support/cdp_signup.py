#!/usr/bin/env python3
"""Drives headless Chromium (DevTools protocol, standard library only) through brief's
signup at 375 px, like a reader on a phone.

usage: cdp_signup.py form URL EMAIL NAME OUT_DIR [CHROMIUM]
         types EMAIL and NAME into the form, ticks every newsletter, presses Subscribe
         (the page's own script does the proof of work, if asked), expects "Check your inbox"
       cdp_signup.py confirm URL OUT_DIR [CHROMIUM]
         opens a confirmation link, presses Confirm, expects "You are subscribed"
Screenshots go to OUT_DIR. Exits 0 when every step worked; prints what failed otherwise.
"""
import json, os, shutil, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp_unsubscribe import chromium_page  # noqa: E402


def load(page, url):
    page.events.clear()
    page.call("Page.navigate", url=url)
    page.wait_event("Page.loadEventFired")


def evaluate(page, expression):
    result = page.call("Runtime.evaluate", expression=expression, returnByValue=True)
    return result.get("result", {}).get("value")


def fits_375(page, step):
    width = evaluate(page, "document.documentElement.scrollWidth")
    if width is None or width > 375:
        raise RuntimeError(f"{step}: the page is {width} px wide at a 375 px viewport")


def type_into(page, selector, text):
    root = page.call("DOM.getDocument")["root"]["nodeId"]
    node = page.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
    if not node:
        raise RuntimeError(f"no {selector} on the page")
    page.call("DOM.focus", nodeId=node)
    page.call("Input.insertText", text=text)


def form(page, url, email, name, out):
    load(page, url)
    html = page.html()
    if "Subscribe to" not in html:
        raise RuntimeError("the signup form did not load:\n" + html[:600])
    fits_375(page, "form")
    page.screenshot(os.path.join(out, "form.png"))
    type_into(page, "#email", email)
    type_into(page, "#name", name)
    boxes = evaluate(page, "document.querySelectorAll('label.check input').length") or 0
    for i in range(boxes):
        if not evaluate(page, f"document.querySelectorAll('label.check input')[{i}].checked"):
            page.click(f"label.check:nth-of-type({i + 1}) input")
    ticked = evaluate(page, "[...document.querySelectorAll('label.check input')].filter(b => b.checked).length")
    if ticked != boxes:
        raise RuntimeError(f"ticked {ticked} of {boxes} newsletters")
    page.screenshot(os.path.join(out, "filled.png"))
    page.submit_and_wait("button[type=submit]")
    html = page.html()
    if "Check your inbox" not in html:
        raise RuntimeError("pressing Subscribe did not lead to 'Check your inbox':\n" + html[:1200])
    fits_375(page, "check your inbox")
    page.screenshot(os.path.join(out, "inbox.png"))
    print(f"ok: the form was filled in and sent at 375 px; screenshots in {out}")


def confirm(page, url, out):
    load(page, url)
    html = page.html()
    if "Confirm your subscription" not in html:
        raise RuntimeError("the confirmation page did not load:\n" + html[:600])
    fits_375(page, "confirm")
    page.screenshot(os.path.join(out, "confirm.png"))
    page.submit_and_wait("form button")
    html = page.html()
    if "You are subscribed" not in html:
        raise RuntimeError("pressing Confirm did not subscribe:\n" + html[:1200])
    page.screenshot(os.path.join(out, "subscribed.png"))
    print(json.dumps({"ok": True, "subscribed_page": html[:4000]}))


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    mode = sys.argv[1]
    if mode == "form" and len(sys.argv) >= 6:
        url, email, name, out = sys.argv[2:6]
        rest = sys.argv[6:]
    elif mode == "confirm":
        url, out = sys.argv[2:4]
        rest = sys.argv[4:]
    else:
        sys.exit(__doc__)
    chromium = rest[0] if rest else "/usr/bin/chromium"
    if not shutil.which(chromium):
        sys.exit(f"chromium not found at {chromium} (Debian package: chromium)")
    os.makedirs(out, exist_ok=True)
    with chromium_page(chromium, 375, 812, mobile=True) as page:
        page.call("DOM.enable")
        page.call("Runtime.enable")
        if mode == "form":
            form(page, url, email, name, out)
        else:
            confirm(page, url, out)


if __name__ == "__main__":
    try:
        main()
    except Exception as err:  # report, exit non-zero
        sys.exit(f"browser check failed: {err}")
