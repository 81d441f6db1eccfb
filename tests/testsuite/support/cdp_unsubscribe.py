#!/usr/bin/env python3
"""Drives headless Chromium over the DevTools protocol (standard library only) through
brief's unsubscribe pages at 375 px: screenshots the confirmation page, clicks its
button with a real mouse event, checks and screenshots the "unsubscribed" page, then
does the same with the resubscribe button.

usage: cdp_unsubscribe.py CONFIRM_URL OUT_DIR [CHROMIUM]
Exits 0 when every step worked; prints what failed otherwise. Every wait is bounded.
"""
import base64, contextlib, json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request

TIMEOUT = 30.0


class WebSocket:
    """The smallest WebSocket client CDP needs: text frames, client masking."""

    def __init__(self, url):
        assert url.startswith("ws://")
        hostport, path = url[5:].split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"DevTools refused the WebSocket: {head!r}")

    def send(self, text):
        data = text.encode()
        header = bytearray([0x81])
        if len(data) < 126:
            header.append(0x80 | len(data))
        elif len(data) < 65536:
            header += bytes([0x80 | 126]) + len(data).to_bytes(2, "big")
        else:
            header += bytes([0x80 | 127]) + len(data).to_bytes(8, "big")
        mask = os.urandom(4)
        self.sock.sendall(bytes(header) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            buf += chunk
        return buf

    def recv(self):
        message = b""
        while True:
            b0, b1 = self._exact(2)
            length = b1 & 0x7F
            if length == 126:
                length = int.from_bytes(self._exact(2), "big")
            elif length == 127:
                length = int.from_bytes(self._exact(8), "big")
            payload = self._exact(length)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise RuntimeError("DevTools closed the WebSocket")
            if opcode in (0x9, 0xA):
                continue
            message += payload
            if b0 & 0x80:
                return message.decode()


class Page:
    def __init__(self, ws):
        self.ws, self.next_id, self.events = ws, 0, []

    def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.time() + TIMEOUT
        while time.time() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)
        raise RuntimeError(f"no answer to {method}")

    def wait_event(self, name):
        deadline = time.time() + TIMEOUT
        while time.time() < deadline:
            for i, ev in enumerate(self.events):
                if ev.get("method") == name:
                    del self.events[: i + 1]
                    return ev
            self.events.append(json.loads(self.ws.recv()))
        raise RuntimeError(f"no {name} event")

    def html(self):
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        return self.call("DOM.getOuterHTML", nodeId=root)["outerHTML"]

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def click(self, selector):
        """A real mouse click in the middle of the element (no page script involved)."""
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise RuntimeError(f"no {selector} on the page")
        quad = self.call("DOM.getBoxModel", nodeId=node)["model"]["content"]
        x, y = (quad[0] + quad[4]) / 2, (quad[1] + quad[5]) / 2
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def submit_and_wait(self, selector):
        self.events.clear()
        self.click(selector)
        self.wait_event("Page.loadEventFired")


@contextlib.contextmanager
def chromium_page(chromium, width, height, mobile):
    """Headless Chromium (fresh profile, no background networking) with one page under
    DevTools control at width x height; stopped and cleaned up on exit."""
    profile = tempfile.mkdtemp(prefix="brief-chromium-")
    proc = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
         f"--window-size={width},{height}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.time() + TIMEOUT
        while not (os.path.exists(port_file) and open(port_file).read().count("\n") >= 1):
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = open(port_file).read().split("\n")[0].strip()
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=TIMEOUT))
        page_target = next(t for t in targets if t.get("type") == "page")
        page = Page(WebSocket(page_target["webSocketDebuggerUrl"]))
        page.call("Page.enable")
        page.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=2 if mobile else 1, mobile=mobile)
        yield page
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    url, out = sys.argv[1], sys.argv[2]
    chromium = sys.argv[3] if len(sys.argv) > 3 else "/usr/bin/chromium"
    if not shutil.which(chromium):
        sys.exit(f"chromium not found at {chromium} (Debian package: chromium)")
    os.makedirs(out, exist_ok=True)
    with chromium_page(chromium, 375, 812, mobile=True) as page:
        page.call("DOM.enable")

        page.events.clear()
        page.call("Page.navigate", url=url)
        page.wait_event("Page.loadEventFired")
        html = page.html()
        if "Unsubscribe from" not in html:
            raise RuntimeError("the confirmation page did not load:\n" + html[:500])
        page.screenshot(os.path.join(out, "confirm.png"))

        page.submit_and_wait("form button")
        html = page.html()
        if "You are unsubscribed" not in html:
            raise RuntimeError("pressing the button did not unsubscribe:\n" + html[:800])
        page.screenshot(os.path.join(out, "unsubscribed.png"))

        page.submit_and_wait("form button")
        html = page.html()
        if "Welcome back" not in html:
            raise RuntimeError("pressing resubscribe did not resubscribe:\n" + html[:800])
        page.screenshot(os.path.join(out, "resubscribed.png"))

        page.submit_and_wait("form button")
        html = page.html()
        if "You are unsubscribed" not in html:
            raise RuntimeError("unsubscribing again did not work:\n" + html[:800])
        print(f"ok: confirmation, unsubscribed and resubscribed pages work in Chromium; screenshots in {out}")


if __name__ == "__main__":
    try:
        main()
    except Exception as err:  # report, exit non-zero
        sys.exit(f"browser check failed: {err}")
