"""Who may use ``l2t-gs view``: Host, Origin and token checks (pure rules, a real websocket client,
headless Chromium), caps on upload bytes in flight, and one-line startup failures."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import uuid

import pytest
from test_viewer import CHROMIUM, Chromium, _free_port, _Server, _wait

from l2t_gs.errors import L2TError
from l2t_gs.viewer.access import AccessPolicy, choose_port


# --------------------------------------------------------------------------- the rules, without a server
def _headers(**values: str | list[str]):
    table = {k.lower(): ([v] if isinstance(v, str) else v) for k, v in values.items()}
    return lambda name: table.get(name.lower(), [])


def test_access_policy_host_origin_and_token_rules():
    policy = AccessPolicy(host="127.0.0.1", port=8123, token="s3cret-token")
    ok_origin = "http://127.0.0.1:8123"

    def check(path="/?token=s3cret-token", websocket=False, **headers):
        return policy.check(path, _headers(**headers), websocket=websocket)

    # accepted: each loopback spelling, the token in the URL (set the cookie) or in the cookie
    for host in ("127.0.0.1:8123", "localhost:8123", "LOCALHOST:8123", "[::1]:8123"):
        assert check(Host=host) == (None, True), host
    assert check("/", Host="localhost:8123", Cookie="a=b; l2t_gs_token_8123=s3cret-token") == (None, False)
    assert (
        check("/", websocket=True, Host="127.0.0.1:8123", Origin=ok_origin, Cookie="l2t_gs_token_8123=s3cret-token")[0]
        is None
    )
    # a websocket that brings the token in its URL needs no cookie (and sets none)
    assert check(websocket=True, Host="127.0.0.1:8123", Origin=ok_origin) == (None, False)
    # refused: other hosts (DNS rebinding), other ports, malformed or repeated Host headers
    for host in ("evil.example:8123", "127.0.0.1:8124", "127.0.0.1", "127.0.0.1.evil.example:8123", "",
                 "127.0.0.1:8123@evil", "::1:8123", "[::1:8123", "127.0.0.1:99999999"):  # fmt: skip
        reason, _ = check(Host=host)
        assert reason is not None and "Host" in reason, host
    assert "2 Host headers" in check(Host=["127.0.0.1:8123", "evil.example:8123"])[0]
    assert "Host" in check()[0]  # no Host at all
    # refused: other origins (scheme, name, port), "null", two Origin headers; a websocket without Origin
    for origin in ("http://evil.example", "https://127.0.0.1:8123", "http://127.0.0.1:8124", "null",
                   "http://localhost:8123"):  # fmt: skip
        assert "cross-origin" in check(Host="127.0.0.1:8123", Origin=origin)[0], origin
    assert "Origin" in check(Host="127.0.0.1:8123", Origin=[ok_origin, ok_origin])[0]
    assert "without an Origin" in check(websocket=True, Host="127.0.0.1:8123")[0]
    # refused: no token, a wrong one (URL or cookie), the cookie of another port's viewer, two tokens
    for path, cookie in (("/", None), ("/?token=s3cret", None), ("/?token=", None), ("/", "l2t_gs_token_8123=nope"),
                         ("/", "l2t_gs_token_9999=s3cret-token"), ("/?token=s3cret-token&token=x", None),
                         ("/", 'l2t_gs_token_8123="s3cret-token; x')):  # fmt: skip
        extra = {"Cookie": cookie} if cookie else {}
        assert "token" in check(path, Host="127.0.0.1:8123", **extra)[0], (path, cookie)
    # --no-token: Host and Origin still checked
    open_policy = AccessPolicy(host="127.0.0.1", port=8123, token=None)
    assert open_policy.check("/", _headers(Host="localhost:8123"), websocket=False) == (None, False)
    assert open_policy.check("/", _headers(Host="evil.example:8123"), websocket=False)[0] is not None
    assert open_policy.url("127.0.0.1") == "http://127.0.0.1:8123/"
    assert policy.url("127.0.0.1") == "http://127.0.0.1:8123/?token=s3cret-token"
    # --host NAME adds that name; a wildcard host adds IP literals (they cannot be rebound), not other names
    named = AccessPolicy(host="viewer.lan", port=80, token=None)
    assert named.check("/", _headers(Host="viewer.lan"), websocket=False)[0] is None  # port 80 may be left out
    wild = AccessPolicy(host="0.0.0.0", port=8123, token=None)
    assert wild.check("/", _headers(Host="192.0.2.7:8123"), websocket=False)[0] is None
    assert wild.check("/", _headers(Host="evil.example:8123"), websocket=False)[0] is not None
    # tokens are fresh and long
    assert len({AccessPolicy().token for _ in range(5)}) == 5 and len(AccessPolicy().token) >= 40


def _listen(port: int, host: str = "127.0.0.1") -> socket.socket | None:
    sock = socket.socket()
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        return None
    sock.listen()
    return sock


def test_choose_port_moves_on_and_fails_in_one_line():
    port = _free_port()
    held = _listen(port)
    assert held is not None
    with held:
        assert choose_port("127.0.0.1", port) > port
        with pytest.raises(L2TError, match=rf"^no free port on 127.0.0.1: port {port} is taken "):
            choose_port("127.0.0.1", port, search=1)
        after = _listen(port + 1)  # two taken ports in a row (when the next one was free)
        if after is not None:
            with after, pytest.raises(L2TError, match=rf"^no free port on 127.0.0.1 in {port}\.\.{port + 1} "):
                choose_port("127.0.0.1", port, search=2)
    assert choose_port("127.0.0.1", port) == port
    with pytest.raises(L2TError, match="^cannot listen on --host 203.0.113.5: not an address of this machine$"):
        choose_port("203.0.113.5", 8080)
    with pytest.raises(L2TError, match="unknown host"):
        choose_port("no-such-host.invalid", 8080)


def test_start_server_refuses_rather_than_serve_unchecked(monkeypatch):
    """A viser that does not serve through ``websockets.asyncio.server.serve`` (simulated: the adapter's
    wrapper goes to a stand-in module) is refused; a viser that never finishes starting times out."""
    pytest.importorskip("viser")
    import viser

    from l2t_gs.viewer import viser_adapter

    stand_in = types.SimpleNamespace(asyncio=types.SimpleNamespace(server=types.SimpleNamespace(serve=None)))
    monkeypatch.setattr(viser_adapter, "websockets", stand_in)
    port = _free_port()
    with pytest.raises(L2TError, match=r"cannot be guarded by the viewer's access checks \(use viser==1.1.1\)"):
        viser_adapter.start_server("127.0.0.1", port, AccessPolicy(port=port), lambda _r: None)
    monkeypatch.undo()
    release = threading.Event()
    monkeypatch.setattr(viser, "ViserServer", lambda **_kw: release.wait(30))
    t0 = time.monotonic()
    with pytest.raises(L2TError, match="could not listen on 127.0.0.1 port 1234 within 0.3 s"):
        viser_adapter.start_server("127.0.0.1", 1234, AccessPolicy(port=1234), lambda _r: None, timeout=0.3)
    release.set()
    assert time.monotonic() - t0 < 5


# --------------------------------------------------------------------------- the viewer in-process
MB = 1024**2
CLIENT_CAP, TOTAL_CAP, FILE_CAP = 3 * MB, 5 * MB, 2 * MB
PART = int(0.45 * MB)


@pytest.fixture(scope="module")
def served():
    """The viewer (default avatar) in-process, with small caps on uploads in flight."""
    pytest.importorskip("viser")
    from l2t_gs.viewer import app

    log: list[str] = []
    options = app.ViewerOptions(
        port=_free_port(),
        max_upload_bytes=FILE_CAP,
        max_client_inflight_bytes=CLIENT_CAP,
        max_total_inflight_bytes=TOTAL_CAP,
    )
    viewer = app.AvatarViewer(options, log=log.append)
    try:
        viewer.start()
        viewer.log = log
        yield viewer
    finally:
        viewer.stop()


def _get(port: int, path: str, **headers: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers.setdefault("Host", f"127.0.0.1:{port}")
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    resp.body = resp.read()
    conn.close()
    return resp


def test_http_needs_host_and_token(served):
    port, token = served.access.port, served.access.token
    assert served.url == f"http://127.0.0.1:{port}/?token={token}" and len(token) >= 40
    good = _get(port, f"/?token={token}")
    assert good.status == 200 and b"<html" in good.body[:200].lower()
    cookie = good.getheader("Set-Cookie")
    assert cookie.startswith(f"l2t_gs_token_{port}={token};") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # the cookie alone serves the page and its files; no Set-Cookie again
    again = _get(port, "/", Cookie=f"l2t_gs_token_{port}={token}")
    assert again.status == 200 and again.body == good.body and again.getheader("Set-Cookie") is None
    for path, headers in (
        ("/", {}),  # no token
        (f"/?token={token[:-1]}", {}),  # a wrong one
        (f"/?token={token}", {"Host": f"evil.example:{port}"}),  # DNS rebinding: the token is no help
        (f"/?token={token}", {"Host": f"127.0.0.1:{port + 1}"}),
        (f"/?token={token}", {"Origin": "http://evil.example"}),  # a cross-origin fetch
        ("/index.html", {"Cookie": f"l2t_gs_token_{port}=x"}),
    ):
        resp = _get(port, path, **headers)
        assert resp.status == 403, (path, headers)
        assert resp.body.startswith(b"403 Forbidden: ") and len(resp.body) < 300 and b"<html" not in resp.body
        assert resp.getheader("Set-Cookie") is None
    assert any("refused an HTTP request: Host 'evil.example" in line for line in served.log)


def _ws(served, *, token: str | None = "cookie", origin: str | None = "same", host: str | None = None, path="/"):
    """A real websocket client (the ``websockets`` package viser uses), as viser's page opens it."""
    import viser
    from websockets.sync.client import connect

    port = served.access.port
    headers = {}
    if token == "cookie":
        headers["Cookie"] = f"l2t_gs_token_{port}={served.access.token}"
    elif token is not None:
        headers["Cookie"] = f"l2t_gs_token_{port}={token}"
    name = host or f"127.0.0.1:{port}"
    if origin == "same":
        origin = f"http://{name}"
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)  # `host` names where we pretend to connect
    sock.settimeout(None)  # the client's own timeouts apply from here
    return connect(
        f"ws://{name}{path}",
        sock=sock,
        origin=origin,
        additional_headers=headers,
        subprotocols=[f"viser-v{viser.__version__}"],
        open_timeout=10,
        max_size=None,
    )


def _received(ws, until: bytes, timeout: float = 20.0) -> list[str]:
    """Message types viser sent until one whose payload contains ``until`` (decoded from viser's wire format)."""
    import msgspec
    import zstandard

    types_seen: list[str] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            raw = ws.recv(timeout=max(0.1, end - time.monotonic()))
        except TimeoutError:
            break
        n, c = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:16], "little")
        inner = zstandard.ZstdDecompressor().decompress(raw[16 : 16 + c], max_output_size=n)
        for msg in msgspec.msgpack.decode(inner)["messages"]:
            types_seen.append(msg["type"])
        if until in inner:
            return types_seen
    raise AssertionError(f"no message with {until!r} within {timeout} s; got {sorted(set(types_seen))}")


def test_websocket_needs_host_origin_and_token(served):
    from websockets.exceptions import InvalidStatus

    port = served.access.port
    for kwargs in (
        {"origin": "http://evil.example.com"},  # any page in the user's browser
        {"origin": f"http://127.0.0.1:{port + 1}"},
        {"origin": None},
        {"host": f"evil.example:{port}"},  # DNS rebinding: same-origin for the attacker's name
        {"token": None},
        {"token": "wrong"},
    ):
        with pytest.raises(InvalidStatus) as info:
            _ws(served, **kwargs)
        assert info.value.response.status_code == 403, kwargs
        assert b"GaussianSplats" not in info.value.response.body
    assert any("refused a websocket: cross-origin request from 'http://evil.example.com'" in m for m in served.log)
    # the right cookie (as the page's websocket carries it), or the token in the URL: the scene arrives
    for kwargs in ({}, {"token": None, "path": f"/?token={served.access.token}"}):
        with _ws(served, **kwargs) as ws:
            assert "GaussianSplatsMessage" in _received(ws, b"GaussianSplatsMessage")


def _send(ws, message) -> None:
    import msgspec

    ws.send(msgspec.msgpack.encode(message.as_serializable_dict()))


def _hello(ws) -> None:
    """The browser's first camera report, after which viser counts a connection as a client."""
    from viser._messages import ViewerCameraMessage

    _send(ws, ViewerCameraMessage((1.0, 0, 0, 0), (0, 0, 1.0), 0.8, 0.01, 100.0, 480, 640, (0, 0, 0), (0, 1.0, 0)))


def _start_upload(ws, button: str, size: int, name: str = "speech.wav", parts: int = 4) -> str:
    from viser._messages import FileTransferStartUpload

    transfer = uuid.uuid4().hex
    _send(ws, FileTransferStartUpload(button, transfer, name, "audio/wav", parts, size))
    return transfer


def test_uploads_in_flight_are_capped_per_client_and_overall(served):
    """A real websocket client starts uploads through the page's upload button (viser's wire messages)."""
    from viser._messages import FileTransferPart

    guard, button = served._upload_guard, served._upload._impl.uuid
    UP = int(1.8 * MB)  # noqa: N806
    transfers = guard.transfers
    assert (guard.client_limit, guard.total_limit) == (CLIENT_CAP, TOTAL_CAP)
    with _ws(served) as a, _ws(served) as b, _ws(served) as c:
        for ws in (a, b, c):
            _hello(ws)
        assert _wait(lambda: len(served.server.get_clients()) == 3, 10)
        first = _start_upload(a, button, UP, "one.wav")
        assert _wait(lambda: first in transfers, 10)
        _send(a, FileTransferPart(button, first, 0, b"\0" * PART))  # a part arrives and is buffered
        assert _wait(lambda: transfers.get(first, {}).get("transferred_bytes") == PART, 10)
        # a second upload from the same browser: 3.6 MB in flight > 3 MB: dropped with one message to it
        second = _start_upload(a, button, UP, "two.wav")
        _received(a, b"would bring this browser's uploads in flight to 3.6 MB; the limit is 3 MB")
        assert second not in transfers and first in transfers
        assert guard.in_flight() == UP
        # other browsers: 1.8 + 1.8 MB fit in 5 MB overall, a third 1.8 MB does not
        third = _start_upload(b, button, UP, "three.wav")
        assert _wait(lambda: third in transfers, 10)
        fourth = _start_upload(c, button, UP, "four.wav")
        _received(c, b"would bring the viewer's uploads in flight to 5.4 MB; the limit is 5 MB")
        assert fourth not in transfers and guard.in_flight() == 2 * UP
        # a client that sends more than it declared is dropped, its buffered parts freed
        liar = _start_upload(c, button, 100, "small.wav", parts=3)
        _send(c, FileTransferPart(button, liar, 0, b"\0" * 1000))
        _received(c, b"sent more bytes than it declared")
        assert liar not in transfers
        # one over the per-file limit: dropped as it starts
        big = _start_upload(c, button, FILE_CAP + MB // 2, "big.wav")
        _received(c, b"upload rejected: 'big.wav' is 2.5 MB; the limit is 2.0 MB")
        assert big not in transfers
    # closed connections: viser frees their unfinished uploads
    assert _wait(lambda: guard.in_flight() == 0, 10), dict(transfers)


# --------------------------------------------------------------------------- l2t-gs view in a subprocess
def _run_module(cwd, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    """``python -m l2t_gs.viewer ARGS`` (``l2t-gs view`` without the l2t-gs CLI's start-up): result, seconds."""
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "l2t_gs.viewer", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd)
    return out, time.monotonic() - t0


def test_view_startup_failures_are_one_line_and_quick(tmp_path):
    """Checked before anything loads; today viser retries 1000 ports, then waits forever."""
    pytest.importorskip("viser")
    out, seconds = _run_module(tmp_path, "--host", "203.0.113.5")  # an address that is not this machine's
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip().splitlines() == [
        "l2t-gs: error: cannot listen on --host 203.0.113.5: not an address of this machine"
    ]
    assert seconds < 5.0 and out.stdout == "", (seconds, out.stdout)
    held = _listen(65535)  # no free port: the last one taken, none after it
    if held is None:
        pytest.skip("port 65535 is in use on this machine")
    with held:
        out, seconds = _run_module(tmp_path, "--port", "65535")
    assert out.returncode == 1 and seconds < 5.0, (seconds, out.stderr)
    assert out.stderr.strip().splitlines() == [
        "l2t-gs: error: no free port on 127.0.0.1: port 65535 is taken (choose another with --port)"
    ]


#: JavaScript: open a websocket to the viewer on port %s as viser's page would; "open" or "closed CODE".
_OPEN_WS = """new Promise((done) => {
  const ws = new WebSocket("ws://127.0.0.1:%s/", ["viser-v1.1.1"]);
  ws.onopen = () => done("open");
  ws.onclose = (e) => done("closed " + e.code);
  setTimeout(() => done("timeout"), 15000);
})"""


@contextlib.contextmanager
def _evil_site():
    """Another web site on this machine (a page the user happens to have open): yields its URL."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = b"<html><body>evil page</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{site.server_address[1]}/"
    finally:
        site.shutdown()
        site.server_close()
        thread.join()


def test_view_in_headless_chromium_needs_the_token(tmp_path):
    """The port is taken (the viewer says it moved); Chromium without the token gets a 403 and no
    connection, with it the page connects; a page of another origin cannot open the websocket."""
    pytest.importorskip("viser")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    taken = _listen(_free_port())
    assert taken is not None
    port = taken.getsockname()[1]
    with taken:
        server = _Server(tmp_path, "--avatar", "default", port=port)
    try:
        moved = server.url.split(":")[2].split("/")[0]
        assert int(moved) != port and f"port {port} is taken: serving on port {moved} instead" in server.log.read_text()
        bare = server.url.split("?")[0]
        assert "?token=" in server.url and len(server.url.split("token=")[1]) >= 40
        with Chromium(bare, tmp_path / "profile") as browser:
            text = browser.text_until(lambda t: "403 Forbidden" in t)
            assert "missing or wrong token" in text, text
            time.sleep(1.0)
            assert "refused a websocket" not in server.log.read_text()  # the 403 page runs no viser client
            # with the token: the client connects (the GUI panel's contents come through the websocket)
            browser.call("Page.navigate", url=server.url)
            text = browser.text_until(lambda t: "Upload audio" in t, 60)
            assert "Upload audio" in text and "403" not in text, text
            # the token became a cookie: the bare URL now connects too
            browser.call("Page.navigate", url=bare)
            text = browser.text_until(lambda t: "Upload audio" in t, 60)
            assert "Upload audio" in text and "403" not in text, text
            # a page of another origin (same site: the cookie goes along) opens the viewer's websocket: refused
            with _evil_site() as evil:
                browser.call("Page.navigate", url=evil)
                assert "evil" in browser.text_until(lambda t: "evil" in t)
                got = browser.call(
                    "Runtime.evaluate", expression=_OPEN_WS % moved, awaitPromise=True, returnByValue=True
                )
            assert got["result"]["value"].startswith("closed"), got
            assert f"refused a websocket: cross-origin request from '{evil.rstrip('/')}'" in server.log.read_text()
        assert server.stop(signal.SIGINT) == 0, server.log.read_text()
    finally:
        server.close()


def test_view_without_token(tmp_path):
    """``--no-token``: the printed URL has none and the page loads without it; Host is still checked."""
    pytest.importorskip("viser")
    server = _Server(tmp_path, "--no-token")
    try:
        assert "token" not in server.url
        assert _get(server.port, "/").status == 200
        assert _get(server.port, "/", Host=f"evil.example:{server.port}").status == 403
    finally:
        server.close()
