"""MP4 output: H.264 video and AAC audio streamed frame by frame with PyAV, written atomically."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from pathlib import Path
from types import TracebackType

import numpy as np

from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import atomic_path, disk_full


class VideoWriter:
    """Stream RGB frames (uint8 [H,W,3] or [B,H,W,3]) and a mono audio track into an MP4.

    The file appears at ``path`` only after :meth:`close` succeeds; an exception inside a ``with``
    block leaves nothing behind. Audio (float32 [n] at ``sample_rate``) is muxed progressively,
    aligned with the frames written so far, so memory stays bounded for long videos.

    With ``background=True`` frames are encoded by a worker thread fed through a queue of at most
    ``queue_frames`` frames, so encoding overlaps with whatever produces the next frame (the
    rasterizer releases the GIL); an encoder error is raised by the next :meth:`write` or by
    :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        width: int,
        height: int,
        *,
        audio: np.ndarray | None = None,
        sample_rate: int = 16000,
        crf: int = 20,
        preset: str = "veryfast",
        background: bool = False,
        queue_frames: int = 8,
    ) -> None:
        import av

        if width % 2 or height % 2:
            raise L2TError(f"video size must be even for H.264 (yuv420p), got {width}x{height}")
        if fps <= 0:
            raise L2TError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps, self.width, self.height = float(fps), int(width), int(height)
        self.audio = None if audio is None else np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
        self.sample_rate = int(sample_rate)
        self.frames_written = 0
        self._audio_pos = 0
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(self.path, suffix=".mp4"))
        try:
            self._container = av.open(str(self._tmp), mode="w", format="mp4")
        except Exception as exc:  # pragma: no cover - av raises OSError subclasses
            self._stack.close()
            raise L2TError(f"cannot write video {self.path}: {exc}") from None
        from fractions import Fraction

        rate = Fraction(self.fps).limit_denominator(1001)
        self._video = self._container.add_stream("libx264", rate=rate)
        self._video.width, self._video.height = self.width, self.height
        self._video.pix_fmt = "yuv420p"
        # one x264 thread: the same frames give the same file (x264's own threads made it depend on
        # timing), and the cores are the render loop's; encoding overlaps with it in a thread of its own
        self._video.options = {"crf": str(crf), "preset": preset, "threads": "1"}
        self._astream = None
        if self.audio is not None:
            self._astream = self._container.add_stream("aac", rate=self.sample_rate)
            self._astream.layout = "mono"
        self._queue: queue.Queue | None = None
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None
        if background:
            self._queue = queue.Queue(maxsize=max(1, int(queue_frames)))
            self._worker = threading.Thread(target=self._drain, name="l2t-video-encoder", daemon=True)
            self._worker.start()

    def _drain(self) -> None:
        """Worker thread: encode queued frames until the ``None`` sentinel; keep the first error."""
        while True:
            img = self._queue.get()
            if img is None:
                return
            if self._error is None:
                try:
                    self._encode(img)
                except BaseException as exc:  # re-raised in the caller's thread
                    self._error = exc

    def _raise_worker_error(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join()
            self._worker = None

    def _encode(self, img: np.ndarray) -> None:
        """Encode and mux one uint8 [H, W, 3] frame, then the audio up to its end."""
        import av

        for packet in self._video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            self._container.mux(packet)
        self.frames_written += 1
        self._mux_audio_until(int(round(self.frames_written / self.fps * self.sample_rate)))

    def _mux_audio_until(self, sample: int) -> None:
        import av

        if self._astream is None:
            return
        sample = min(sample, self.audio.shape[0])
        if sample <= self._audio_pos:
            return
        chunk = self.audio[self._audio_pos : sample]
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._audio_pos
        self._audio_pos = sample
        for packet in self._astream.encode(frame):
            self._container.mux(packet)

    def write(self, frames: np.ndarray) -> None:
        """Append frames: uint8 [H,W,3] or [B,H,W,3] (RGB)."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3):
            raise ValueError(f"frames must be [B,{self.height},{self.width},3], got {list(frames.shape)}")
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        for img in frames:
            if self._queue is None:
                self._encode(np.ascontiguousarray(img))
            else:
                self._raise_worker_error()
                self._queue.put(np.array(img, order="C"))  # a copy: the caller may reuse its buffer

    def close(self) -> None:
        """Flush encoders and move the finished file into place."""
        if self._container is None:
            return
        self._stop_worker()
        try:
            self._raise_worker_error()
        except BaseException:
            self.abort()
            raise
        self._mux_audio_until(self.audio.shape[0] if self.audio is not None else 0)
        for packet in self._video.encode():
            self._container.mux(packet)
        if self._astream is not None:
            for packet in self._astream.encode():
                self._container.mux(packet)
        self._container.close()
        self._container = None
        self._stack.close()

    def abort(self, exc: BaseException | None = None) -> None:
        """Drop the partial output (``exc``: the failure that stops the encoding, if any)."""
        if self._worker is not None:
            self._error = self._error or RuntimeError("aborted")  # the worker skips what is queued
            self._stop_worker()
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        exc = exc if exc is not None else RuntimeError("aborted")
        self._stack.__exit__(type(exc), exc, exc.__traceback__)
        if disk_full(exc):
            raise L2TError(f"cannot write {self.path}: no space left on the device (nothing was written)") from None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            try:
                self.close()
            except BaseException as err:  # e.g. a full disk while flushing: drop the partial file
                self.abort(err)
                raise
        else:
            self.abort(exc)


def probe_video(path: str | os.PathLike) -> dict:
    """Stream facts of a media file: codec names, frame count, durations (seconds)."""
    import av

    with av.open(str(path)) as c:
        out = {"duration": c.duration / 1e6 if c.duration else None}
        for s in c.streams:
            dur = float(s.duration * s.time_base) if s.duration else None
            out[s.type] = {"codec": s.codec_context.name, "duration": dur, "frames": s.frames}
            if s.type == "video":
                out[s.type].update(width=s.codec_context.width, height=s.codec_context.height)
            if s.type == "audio":
                out[s.type].update(sample_rate=s.codec_context.sample_rate)
    return out
