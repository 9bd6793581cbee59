"""The one place where the viewer touches viser internals. viser is pinned at 1.1.1 for it (``viser==1.1.1``
in pyproject.toml's ``viewer`` and ``dev`` extras): check this module again before changing the pin.

Why: viser 1.1.1 has no public hook that sees an upload before all of its bytes are buffered in the
server's memory (``GuiUploadButtonHandle.on_upload`` fires once the whole file has arrived), so an
upload of any size would be held in memory before the viewer can refuse it, and any number of
unfinished uploads may be held at once. :func:`install_upload_size_guard` drops an upload as it starts,
or as soon as it goes over, when it is over the per-file limit, sends more than it declared, or takes
the upload bytes in flight over the caps per connection or overall. It touches exactly:

- ``viser._messages.FileTransferStartUpload`` and ``FileTransferPart``: the messages a browser sends
  to upload a file (start with the declared size, then its parts), and ``FileTransferPartAck``, sent
  back so that the browser releases its upload button;
- ``ViserServer._websock_server``: its ``register_handler`` (to see those messages, after viser's own
  handlers) and ``queue_message`` (to send the acknowledgement);
- ``GuiApi._current_file_upload_states``: viser's table of uploads in flight (transfer uuid -> state
  dict with ``client_id``, ``filename``, ``total_bytes``, ``transferred_bytes``, ...); removing a
  transfer from it frees its buffered parts and makes viser ignore (and not buffer) its remaining parts.

With another viser version where any of these is missing, no guard is installed (the caller is told)
and uploads are size-checked only after they arrived.

**Access checks** (:func:`start_server`). viser 1.1.1 serves its page and its websocket from one
``websockets.asyncio.server.serve(..., process_request=viser_http_server)`` call inside
``WebsockServer._background_worker`` (``viser/infra/_infra.py``) and offers no hook on either: every
request with any ``Host``, ``Origin`` or none is served. :func:`start_server` therefore wraps
``websockets.asyncio.server.serve`` (the module attribute that viser looks up at call time) *only while
the ViserServer is being constructed*, under a lock, and passes viser's own ``process_request`` on
wrapped in :class:`_GuardedRequest`, which answers 403 before viser sees a request that
:meth:`AccessPolicy.check <l2t_gs.viewer.access.AccessPolicy.check>` refuses. Everything else
(serving the page, the upgrade, the port loop) stays viser's own code.

Conventions, told apart: *viser's* (1.1.1): ``ViserServer(host, port)`` blocks until bound and, when the port
is taken, silently tries the next one (up to 1000 ports), hanging forever when none can be bound (e.g. a
``host`` that is no address of this machine); ``process_request`` returns None for websocket upgrades and a
200/404 ``Response`` for files; clients must speak the ``viser-v<version>`` subprotocol and count as connected
after their first camera message; uploads are buffered part by part until complete, and a disconnected
client's unfinished ones are dropped. *Ours* (this module and :mod:`l2t_gs.viewer.access`): the port is chosen
before viser binds (``access.choose_port``: one-line error, no hang), construction has a time limit
(:data:`STARTUP_TIMEOUT_S`), and every request passes the Host/Origin/token checks first; a page loaded with a
valid ``?token=`` gets viser's response plus a ``Set-Cookie`` carrying the token. If a viser version no longer
calls ``websockets.asyncio.server.serve`` that way, :func:`start_server` refuses to serve rather than serve
unchecked.

For annotations only, :data:`ProgressBarHandle` names ``viser._gui_handles.GuiProgressBarHandle``, the
type ``GuiApi.add_progress_bar`` returns, which viser 1.1.1 does not export. The rest of the viewer uses
viser's public API.
"""

from __future__ import annotations

import http
import threading
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import viser
import websockets.asyncio.server
from viser.infra import WebsockServer

from l2t_gs.errors import L2TError

from .access import AccessPolicy

try:
    from viser._messages import FileTransferPart, FileTransferPartAck, FileTransferStartUpload
except ImportError:  # pragma: no cover - other viser versions
    FileTransferPart = FileTransferPartAck = FileTransferStartUpload = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    # the type add_progress_bar() returns, not exported by viser 1.1.1 (see the module docstring)
    from viser._gui_handles import GuiProgressBarHandle as ProgressBarHandle  # noqa: F401

#: ``on_reject(client, file name, size in bytes, reason)``: an upload was dropped (client None: gone);
#: ``reason`` is None when the file alone is over the per-file limit, else a one-line reason.
RejectCallback = Callable[[viser.ClientHandle | None, str, int, "str | None"], None]


def _mb(n: int) -> str:
    return f"{n / 1024**2:.0f} MB"


class UploadSizeGuard:
    """Drops uploads to ``server`` over the per-file ``limit`` (declared or reached) and uploads that would
    take the bytes in flight (declared sizes of unfinished uploads, or what arrived if more) over
    ``client_limit`` for one browser connection or ``total_limit`` for the server; see the module docstring.

    A dropped upload is removed from viser's table, so its buffered parts are freed and its later parts
    ignored; viser itself drops a disconnected client's unfinished uploads.
    """

    def __init__(
        self,
        server: viser.ViserServer,
        limit: int,
        on_reject: RejectCallback,
        transfers: MutableMapping[str, Any],  # values: viser's private _FileUploadState dicts
        websock: WebsockServer,
        client_limit: int | None = None,
        total_limit: int | None = None,
    ) -> None:
        self.server = server
        self.limit = limit
        self.client_limit = client_limit if client_limit is not None else limit
        self.total_limit = total_limit if total_limit is not None else self.client_limit
        self.on_reject = on_reject
        #: viser's table of uploads in flight (``GuiApi._current_file_upload_states``).
        self.transfers = transfers
        self._websock = websock

    def in_flight(self, client_id: int | None = None) -> int:
        """Bytes held or promised by unfinished uploads (of ``client_id``; None: of everyone)."""
        total = 0
        for state in list(self.transfers.values()):
            if client_id is None or state.get("client_id") == client_id:
                total += max(int(state.get("total_bytes", 0)), int(state.get("transferred_bytes", 0)))
        return total

    def _over_caps(self, client_id: int, name: str) -> str | None:
        mine, everyone = self.in_flight(client_id), self.in_flight()
        if mine > self.client_limit:
            return (
                f"'{name}' would bring this browser's uploads in flight to {mine / 1024**2:.1f} MB; "
                f"the limit is {_mb(self.client_limit)} (wait for the current upload to finish)"
            )
        if everyone > self.total_limit:
            return (
                f"'{name}' would bring the viewer's uploads in flight to {everyone / 1024**2:.1f} MB; "
                f"the limit is {_mb(self.total_limit)} (try again when other uploads have finished)"
            )
        return None

    def on_start(self, client_id: int, msg: FileTransferStartUpload) -> None:
        """After viser registered a new upload: drop it when it is over the per-file limit or the caps."""
        if msg.transfer_uuid not in self.transfers:
            return
        if msg.size_bytes > self.limit:
            self._drop(client_id, msg.transfer_uuid, msg.source_component_uuid, msg.size_bytes, msg.filename, None)
            return
        reason = self._over_caps(client_id, _short(msg.filename))
        if reason is not None:
            self._drop(client_id, msg.transfer_uuid, msg.source_component_uuid, msg.size_bytes, msg.filename, reason)

    def on_part(self, client_id: int, msg: FileTransferPart) -> None:
        """After viser buffered a part: drop the upload when more bytes arrived than declared or allowed."""
        state = self.transfers.get(msg.transfer_uuid)
        if state is None:
            return
        total, arrived = int(state.get("total_bytes", 0)), int(state.get("transferred_bytes", 0))
        name = str(state.get("filename", ""))
        if arrived > self.limit:
            self._drop(client_id, msg.transfer_uuid, msg.source_component_uuid, arrived, name, None)
        elif arrived > total:
            reason = f"'{_short(name)}' sent more bytes than it declared"
            self._drop(client_id, msg.transfer_uuid, msg.source_component_uuid, arrived, name, reason)
        else:
            reason = self._over_caps(client_id, _short(name))
            if reason is not None:
                self._drop(client_id, msg.transfer_uuid, msg.source_component_uuid, total, name, reason)

    def _drop(
        self, client_id: int, transfer_uuid: str, source: str | None, size: int, name: str, reason: str | None
    ) -> None:
        if self.transfers.pop(transfer_uuid, None) is None:
            return
        # tell the browser the transfer is over so that its upload button is released
        self._websock.queue_message(FileTransferPartAck(source, transfer_uuid, size, size))
        self.on_reject(self.server.get_clients().get(client_id), name, size, reason)


def _short(name: str, limit: int = 60) -> str:
    """A client-supplied name shortened for a message (the viewer escapes it before showing it)."""
    name = str(name).replace("\n", " ")
    return name if len(name) <= limit else name[: limit - 3] + "..."


def install_upload_size_guard(
    server: viser.ViserServer,
    limit: int,
    on_reject: RejectCallback,
    *,
    client_limit: int | None = None,
    total_limit: int | None = None,
) -> UploadSizeGuard | None:
    """Install an :class:`UploadSizeGuard` on ``server``; None when this viser version lacks the internals it needs."""
    try:
        websock = server._websock_server
        transfers = server.gui._current_file_upload_states
    except AttributeError:  # pragma: no cover - other viser versions
        return None
    if FileTransferStartUpload is None:  # pragma: no cover - other viser versions
        return None
    guard = UploadSizeGuard(server, limit, on_reject, transfers, websock, client_limit, total_limit)
    websock.register_handler(FileTransferStartUpload, guard.on_start)
    websock.register_handler(FileTransferPart, guard.on_part)
    return guard


# --------------------------------------------------------------------------- access checks
#: Longest wait for viser to bind and start (it blocks, or hangs when it can bind nothing).
STARTUP_TIMEOUT_S = 20.0
#: Serialises the temporary wrapping of ``websockets.asyncio.server.serve`` (see the module docstring).
_SERVE_LOCK = threading.Lock()

#: ``on_refused(reason)``: a request was answered 403 (for the log).
RefusedCallback = Callable[[str], None]


class _GuardedRequest:
    """viser's ``process_request`` behind :meth:`AccessPolicy.check` for a server bound at ``port``."""

    def __init__(self, inner: Callable[..., Any] | None, policy: AccessPolicy, port: int, on_refused: RefusedCallback):
        self.inner, self.policy, self.port, self.on_refused = inner, policy, port, on_refused

    def __call__(self, connection: Any, request: Any) -> Any:
        headers = request.headers
        websocket = any(v.lower() == "websocket" for v in headers.get_all("Upgrade"))
        reason, set_cookie = self.policy.check(request.path, headers.get_all, websocket=websocket, port=self.port)
        if reason is not None:
            self.on_refused(f"refused {'a websocket' if websocket else 'an HTTP request'}: {reason}")
            response = connection.respond(http.HTTPStatus.FORBIDDEN, f"403 Forbidden: {reason}\n")
            response.headers["Cache-Control"] = "no-store"
            return response
        response = self.inner(connection, request) if self.inner is not None else None
        if response is not None and set_cookie and response.status_code == http.HTTPStatus.OK:
            response.headers["Set-Cookie"] = self.policy.set_cookie_value()
            response.headers["Cache-Control"] = "no-store"
        return response


def start_server(
    host: str, port: int, policy: AccessPolicy, on_refused: RefusedCallback, timeout: float = STARTUP_TIMEOUT_S
) -> viser.ViserServer:
    """A started :class:`viser.ViserServer` on ``host``:``port`` whose every request passes ``policy``.

    ``policy.port`` is set to the port actually bound (viser moves on when ``port`` was taken
    meanwhile). Raises :class:`L2TError` when viser has not started within ``timeout`` seconds.
    """
    real_serve = websockets.asyncio.server.serve

    wrapped: list[int] = []

    def serve(handler: Any, host_: Any = None, port_: Any = None, **kwargs: Any) -> Any:
        wrapped.append(int(port_))
        kwargs["process_request"] = _GuardedRequest(kwargs.get("process_request"), policy, int(port_), on_refused)
        return real_serve(handler, host_, port_, **kwargs)

    box: dict[str, Any] = {}

    def construct() -> None:
        try:
            box["server"] = viser.ViserServer(host=host, port=port, verbose=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    with _SERVE_LOCK:
        websockets.asyncio.server.serve = serve  # type: ignore[assignment,misc]
        try:
            thread = threading.Thread(target=construct, name="l2t-view-start", daemon=True)
            thread.start()
            thread.join(timeout)
        finally:
            websockets.asyncio.server.serve = real_serve  # type: ignore[misc]
    if "error" in box:
        raise box["error"]
    if "server" not in box:
        raise L2TError(f"the viewer could not listen on {host} port {port} within {timeout:g} s")
    server = box["server"]
    if server.get_port() not in wrapped:  # this viser did not serve through the wrapped call: refuse
        server.stop()
        raise L2TError(f"viser {viser.__version__} cannot be guarded by the viewer's access checks (use viser==1.1.1)")
    policy.port = server.get_port()
    return server
