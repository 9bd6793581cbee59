"""The one place where the viewer touches viser internals. viser is pinned at 1.1.1 for it (``viser==1.1.1``
in pyproject.toml's ``viewer`` and ``dev`` extras): check this module again before changing the pin.

Why: viser 1.1.1 has no public hook that sees an upload before all of its bytes are buffered in the
server's memory (``GuiUploadButtonHandle.on_upload`` fires once the whole file has arrived), so an
upload of any size would be held in memory before the viewer can refuse it.
:func:`install_upload_size_guard` drops an over-large upload as it starts. It touches exactly:

- ``viser._messages.FileTransferStartUpload`` and ``FileTransferPart``: the messages a browser sends
  to upload a file (start with the declared size, then its parts), and ``FileTransferPartAck``, sent
  back so that the browser releases its upload button;
- ``ViserServer._websock_server``: its ``register_handler`` (to see those messages, after viser's own
  handlers) and ``queue_message`` (to send the acknowledgement);
- ``GuiApi._current_file_upload_states``: viser's table of uploads in flight (transfer uuid -> state
  dict with ``filename``, ``total_bytes``, ``transferred_bytes``, ...); removing a transfer from it
  makes viser ignore (and not buffer) that transfer's remaining parts.

With another viser version where any of these is missing, no guard is installed (the caller is told)
and uploads are size-checked only after they arrived.

For annotations only, :data:`ProgressBarHandle` names ``viser._gui_handles.GuiProgressBarHandle``, the
type ``GuiApi.add_progress_bar`` returns, which viser 1.1.1 does not export. The rest of the viewer uses
viser's public API.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import viser
from viser.infra import WebsockServer

try:
    from viser._messages import FileTransferPart, FileTransferPartAck, FileTransferStartUpload
except ImportError:  # pragma: no cover - other viser versions
    FileTransferPart = FileTransferPartAck = FileTransferStartUpload = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    # the type add_progress_bar() returns, not exported by viser 1.1.1 (see the module docstring)
    from viser._gui_handles import GuiProgressBarHandle as ProgressBarHandle  # noqa: F401

#: ``on_reject(client, file name, size in bytes)``: an upload was dropped for its size (client None: gone).
RejectCallback = Callable[[viser.ClientHandle | None, str, int], None]


class UploadSizeGuard:
    """Drops uploads to ``server`` that declare, or reach, more than ``limit`` bytes; see the module docstring."""

    def __init__(
        self,
        server: viser.ViserServer,
        limit: int,
        on_reject: RejectCallback,
        transfers: MutableMapping[str, Any],  # values: viser's private _FileUploadState dicts
        websock: WebsockServer,
    ) -> None:
        self.server = server
        self.limit = limit
        self.on_reject = on_reject
        #: viser's table of uploads in flight (``GuiApi._current_file_upload_states``).
        self.transfers = transfers
        self._websock = websock

    def on_start(self, client_id: int, msg: FileTransferStartUpload) -> None:
        """After viser registered a new upload: drop it when its declared size is over the limit."""
        if msg.size_bytes > self.limit:
            self._drop(client_id, msg.transfer_uuid, msg.source_component_uuid, msg.size_bytes, msg.filename)

    def on_part(self, client_id: int, msg: FileTransferPart) -> None:
        """After viser buffered a part: drop the upload when more bytes arrived than the limit (a lying client)."""
        state = self.transfers.get(msg.transfer_uuid)
        if state is not None and state.get("transferred_bytes", 0) > self.limit:
            total = int(state.get("total_bytes", 0))
            self._drop(client_id, msg.transfer_uuid, msg.source_component_uuid, total, str(state.get("filename", "")))

    def _drop(self, client_id: int, transfer_uuid: str, source: str | None, size: int, name: str) -> None:
        if self.transfers.pop(transfer_uuid, None) is None:
            return
        # tell the browser the transfer is over so that its upload button is released
        self._websock.queue_message(FileTransferPartAck(source, transfer_uuid, size, size))
        self.on_reject(self.server.get_clients().get(client_id), name, size)


def install_upload_size_guard(
    server: viser.ViserServer, limit: int, on_reject: RejectCallback
) -> UploadSizeGuard | None:
    """Install an :class:`UploadSizeGuard` on ``server``; None when this viser version lacks the internals it needs."""
    try:
        websock = server._websock_server
        transfers = server.gui._current_file_upload_states
    except AttributeError:  # pragma: no cover - other viser versions
        return None
    if FileTransferStartUpload is None:  # pragma: no cover - other viser versions
        return None
    guard = UploadSizeGuard(server, limit, on_reject, transfers, websock)
    websock.register_handler(FileTransferStartUpload, guard.on_start)
    websock.register_handler(FileTransferPart, guard.on_part)
    return guard
