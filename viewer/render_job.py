"""The viewer's "Render MP4" button: ``l2t_gs.pipeline.render_video`` (the code path of ``l2t-gs render``)
run in a child process, so that a long render can be cancelled and cannot take the server down.

The child (``python -m l2t_gs.viewer.render_job SPEC.json``) prints the pipeline's progress bar on
stderr; the parent reads ``done/total`` from it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from l2t_gs.errors import L2TError
from l2t_gs.pipeline import RenderConfig, RenderResult, render_video

_PROGRESS = re.compile(r"(\d+)/(\d+)")


def render_with_pipeline(audio_path: str, out_path: str, options: dict[str, Any]) -> RenderResult:
    """``render_video(audio_path, out_path, RenderConfig(**options))``: ``options`` are ``RenderConfig`` fields."""
    return render_video(audio_path, out_path, RenderConfig(**options))


def run_render_child(
    audio_path: Path,
    out_path: Path,
    options: dict[str, Any],
    *,
    on_progress: Callable[[int, int], None] | None = None,
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> Path:
    """Render in a child process; returns ``out_path`` or raises :class:`L2TError` with the child's reason."""
    spec = out_path.with_suffix(".json")
    spec = spec.resolve()
    spec.write_text(
        json.dumps({"audio": str(Path(audio_path).resolve()), "out": str(Path(out_path).resolve()), "options": options})
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "l2t_gs.viewer.render_job", str(spec)],
        cwd=tempfile.gettempdir(),  # `-m` puts the cwd first on sys.path: never let a source tree shadow the install
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    if on_start is not None:
        on_start(proc)
    tail: list[str] = []
    assert proc.stderr is not None
    buf = b""
    while True:
        chunk = proc.stderr.read1(4096) if hasattr(proc.stderr, "read1") else proc.stderr.read(4096)
        if not chunk:
            break
        buf += chunk
        *parts, buf = re.split(rb"[\r\n]", buf)
        for raw in parts:
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            m = _PROGRESS.search(line)
            if m and on_progress is not None and "rendering" in line:
                on_progress(int(m.group(1)), int(m.group(2)))
            else:
                tail = (tail + [line])[-5:]
    if buf.strip():
        tail = (tail + [buf.decode("utf-8", "replace").strip()])[-5:]
    rc = proc.wait()
    spec.unlink(missing_ok=True)
    if rc != 0:
        out_path.unlink(missing_ok=True)
        if rc < 0:
            raise L2TError("rendering was stopped")
        reason = next((ln for ln in reversed(tail) if ln.startswith("error: ")), "")
        raise L2TError(reason[len("error: ") :] if reason else f"rendering failed (exit status {rc})")
    if not out_path.is_file():
        raise L2TError("rendering produced no file")
    return out_path


def _child_main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        render_with_pipeline(spec["audio"], spec["out"], spec["options"])
    except L2TError as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
