#!/usr/bin/env python3
"""Drives the status page in a real headless Chromium over the DevTools
protocol (loopback only): loads it, gives it the read token, waits for the
matrix to show both backends up, stops backend `a`, times how long until
the page shows it down, saves a screenshot, starts `a` again and waits for
it to come back up. Fails on any console error or uncaught exception.
Used by scripts/status-page.sh.

    status-page.py API_URL TOKEN DEVTOOLS_PORT DNS_PORT BACKEND_PORT BACKEND_DIR SCREENSHOT
"""
import base64
import json
import socket
import struct
import subprocess
import sys
import time
import urllib.request

import websocket  # websocket-client

api, token, devtools, dns_port, backend_port, backend_dir, shot = sys.argv[1:8]
dns_port, backend_port = int(dns_port), int(backend_port)


class Page:
    def __init__(self, port):
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(url, timeout=10)
        self.next_id = 0
        self.errors = []

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.event(msg)

    def event(self, msg):
        m, p = msg.get("method"), msg.get("params", {})
        if m == "Runtime.exceptionThrown":
            self.errors.append("exception: " + p["exceptionDetails"].get("text", "")
                               + " " + json.dumps(p["exceptionDetails"].get("exception", {}).get("description", "")))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
            self.errors.append("log: " + p["entry"]["text"] + " " + p["entry"].get("url", ""))

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        return r.get("result", {}).get("value")

    def pump(self, seconds):
        """Reads events for a while (console errors arrive as events)."""
        end = time.monotonic() + seconds
        self.ws.settimeout(0.2)
        while time.monotonic() < end:
            try:
                self.event(json.loads(self.ws.recv()))
            except websocket.WebSocketTimeoutException:
                pass
        self.ws.settimeout(10)


def ask_dns(n):
    """A few queries for www, so the answer chart has something to show."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    q = struct.pack(">HHHHHH", 7, 0, 1, 0, 0, 0)
    for label in ["www", "status", "test"]:
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 1, 1)
    for _ in range(n):
        s.sendto(q, ("127.0.0.1", dns_port))
        try:
            s.recv(512)
        except socket.timeout:
            pass


def backend():
    return subprocess.Popen([sys.executable, "-m", "http.server", str(backend_port), "-b", "127.0.0.1", "-d", backend_dir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


VERDICT = "(document.querySelector('th.verdict[data-endpoint=\"%s\"]') || {dataset: {}}).dataset.verdict || ''"


def wait_verdict(page, endpoint, want, limit):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        ask_dns(10)
        if page.eval(VERDICT % endpoint) == want:
            return time.monotonic() - start
        page.pump(0.25)
    raise SystemExit(f"the page never showed {endpoint} {want} within {limit} s; errors: {page.errors}")


served = backend()
page = Page(devtools)
for domain in ("Runtime", "Log", "Page"):
    page.call(f"{domain}.enable")
page.call("Emulation.setDeviceMetricsOverride", width=1200, height=900, deviceScaleFactor=1, mobile=False)
page.call("Page.navigate", url=api + "/")
page.pump(1.0)
# the login form is shown until a token is given
assert page.eval("!document.getElementById('login').hidden"), "the page asks for a token"
page.eval(f"document.getElementById('token').value = {json.dumps(token)}; "
          "document.getElementById('login').requestSubmit(); true")
took_up = wait_verdict(page, "a", "up", 60)
wait_verdict(page, "b", "up", 30)
print(f"both backends shown up ({took_up:.1f} s after the token)")
page.pump(4.0)

served.terminate()
served.wait()
stopped = time.monotonic()
down = wait_verdict(page, "a", "down", 30)
print(f"backend a stopped: the page showed it down {down:.1f} s later")
# a few more polls for the chart, then the picture
for _ in range(8):
    ask_dns(20)
    page.pump(0.5)
summary = page.eval("document.getElementById('summary').textContent")
cells = page.eval("JSON.stringify([...document.querySelectorAll('td.cell')].map(c => c.dataset.endpoint + ':' + c.dataset.state))")
bars = page.eval("document.querySelectorAll('svg.chart rect').length")
png = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
with open(shot, "wb") as f:
    f.write(base64.b64decode(png))
print(f"screenshot: {shot} ({len(png) * 3 // 4} bytes); summary: {summary}; cells: {cells}; chart bars: {bars}")

served = backend()
up = wait_verdict(page, "a", "up", 30)
print(f"backend a started again: shown up {up:.1f} s later")
served.terminate()
page.pump(1.0)
if page.errors:
    print("console errors:\n  " + "\n  ".join(page.errors))
    sys.exit(1)
print("no console errors")
