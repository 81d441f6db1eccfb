#!/usr/bin/env python3
"""Loads a built email.html in headless Chromium over the DevTools protocol, in the
light and in the emulated dark colour scheme (prefers-color-scheme: dark), and checks
what the default templates promise: one <h1> (the edition's title), an <h2> for each
section title given, no vague link text ("click here", "read more", ...), the dark
block applied (a dark page), and every visible text at a
contrast of 4.5:1 or more against the background it is drawn on (WCAG 2 formula).
Uses the WebSocket and Page helpers of cdp_unsubscribe.py beside it.

usage: cdp_dark_mode.py EMAIL_HTML TITLE SECTION_TITLE... [--chromium PATH]
Prints "ok: ..." and exits 0, or exits non-zero saying what failed.
"""
import json, os, shutil, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdp_unsubscribe as cdp  # noqa: E402 (the helper sits beside this file)

VAGUE = {"click here", "here", "read more", "learn more", "more", "link", "this link", "click"}

# Runs in the page: headings, the page colour and the texts under 4.5:1.
PROBE = r"""JSON.stringify((function () {
  function rgba(s) {
    var m = s.match(/rgba?\(([^)]+)\)/);
    if (!m) return [0, 0, 0, 0];
    var p = m[1].split(',').map(parseFloat);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  }
  function lum(c) {
    var v = c.slice(0, 3).map(function (x) {
      x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
  }
  function background(el) {
    for (; el; el = el.parentElement) {
      var c = rgba(getComputedStyle(el).backgroundColor);
      if (c[3] > 0.5) return c;
    }
    return [255, 255, 255, 1];
  }
  var low = [], checked = 0;
  var walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (var n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.nodeValue.trim()) continue;
    var el = n.parentElement;
    if (!el.getClientRects().length || getComputedStyle(el).visibility === 'hidden') continue;
    var fg = rgba(getComputedStyle(el).color), bg = background(el);
    var a = lum(fg), b = lum(bg);
    var ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    checked++;
    if (ratio < 4.5) low.push(n.nodeValue.trim().slice(0, 40) + ' ' + ratio.toFixed(2) + ':1');
  }
  return {
    h1: Array.prototype.map.call(document.querySelectorAll('h1'), function (h) { return h.textContent.trim(); }),
    h2: Array.prototype.map.call(document.querySelectorAll('h2'), function (h) { return h.textContent.trim(); }),
    links: Array.prototype.map.call(document.querySelectorAll('a'), function (a) { return a.textContent.trim(); }),
    page: lum(background(document.querySelector('h1'))),
    low: low, checked: checked
  };
})())"""


def main():
    args = sys.argv[1:]
    chromium = "/usr/bin/chromium"
    if "--chromium" in args:
        i = args.index("--chromium")
        chromium = args[i + 1]
        del args[i:i + 2]
    if len(args) < 2:
        sys.exit(__doc__)
    html, title, sections = os.path.abspath(args[0]), args[1], args[2:]
    if not shutil.which(chromium):
        sys.exit(f"chromium not found at {chromium} (Debian package: chromium; scripts/test.sh installs it)")
    with cdp.chromium_page(chromium, 640, 1000, mobile=False) as page:
        page.call("Runtime.enable")
        results = {}
        for scheme in ("light", "dark"):
            page.call("Emulation.setEmulatedMedia",
                      features=[{"name": "prefers-color-scheme", "value": scheme}])
            page.events.clear()
            page.call("Page.navigate", url="file://" + html)
            page.wait_event("Page.loadEventFired")
            r = page.call("Runtime.evaluate", expression=PROBE, returnByValue=True)
            state = json.loads(r["result"]["value"])
            if state["h1"] != [title]:
                sys.exit(f"{scheme}: the <h1> elements are {state['h1']}, not [{title!r}]")
            missing = [s for s in sections if s not in state["h2"]]
            if missing:
                sys.exit(f"{scheme}: no <h2> for {missing} (h2: {state['h2']})")
            vague = [t for t in state["links"] if t.lower().rstrip(".!…") in VAGUE]
            if vague:
                sys.exit(f"vague link texts: {vague}")
            if state["low"]:
                sys.exit(f"{scheme}: text under 4.5:1 contrast: {state['low']}")
            if state["checked"] < 20:
                sys.exit(f"{scheme}: only {state['checked']} texts found")
            results[scheme] = state
        if results["light"]["page"] < 0.5 or results["dark"]["page"] > 0.05:
            sys.exit(f"the dark block is not applied: page luminance light "
                     f"{results['light']['page']:.3f}, dark {results['dark']['page']:.3f}")
    print(f"ok: {results['dark']['checked']} texts at 4.5:1 or more in light and dark, "
          f"h1 {title!r}, h2 {results['dark']['h2']}")


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        sys.exit(f"chromium: {e}")
