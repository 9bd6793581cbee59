"""Demo-video layouts: rendered tiles composed into one frame with labels, a waveform strip and captions.

A :class:`Layout` is a grid of ``rows x cols`` square tiles (``tile`` pixels each; row-major order), each
under a label strip when labels are given, then an optional caption strip and an optional waveform
strip with a moving cursor. :meth:`Layout.compose` copies the tiles unchanged into the frame (a tile's
pixels equal a single-view render's), so a layout adds no resampling. Static parts (label strips, the
waveform drawn twice: played and not yet played) are drawn once; per frame only the cursor moves and a
caption strip changes at word boundaries (cached). Drawing uses numpy and PIL only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from l2t_gs.errors import L2TError

__all__ = ["Caption", "Layout", "caption_lines", "waveform_envelope"]

INK = (20, 20, 20)
MUTED = (150, 150, 150)
HIGHLIGHT = (200, 40, 30)
WAVE_PLAYED = (40, 90, 170)
WAVE_AHEAD = (185, 195, 210)
CURSOR = (220, 30, 30)


@dataclass(frozen=True)
class Caption:
    """A caption token (a word or a phone) shown from ``start`` to ``end`` seconds."""

    text: str
    start: float
    end: float


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


@lru_cache(maxsize=16)
def _font(px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # pragma: no cover - Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _text_strip(
    width: int, height: int, parts: Sequence[tuple[str, tuple[int, int, int]]], bg: tuple[int, int, int]
) -> np.ndarray:
    """A ``[height, width, 3]`` strip with ``parts`` (text, colour) drawn in a row, centred."""
    img = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(img)
    font = _font(max(6, int(height * 0.7)))
    sep = font.getlength(" ")
    total = sum(font.getlength(t) for t, _ in parts) + sep * max(0, len(parts) - 1)
    x = max(2.0, (width - total) / 2.0)
    for text, colour in parts:
        draw.text((x, height / 2.0), text, fill=colour, font=font, anchor="lm")
        x += font.getlength(text) + sep
    return np.asarray(img, dtype=np.uint8)


def waveform_envelope(audio: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-column minimum and maximum ``[columns]`` of ``audio [n]`` split into ``columns`` equal spans."""
    a = np.asarray(audio, dtype=np.float32).reshape(-1)
    if a.size == 0 or columns < 1:
        raise L2TError("waveform: need audio samples and at least one column")
    edges = np.minimum((np.arange(columns) * a.size) // columns, a.size - 1)
    return np.minimum.reduceat(a, edges), np.maximum.reduceat(a, edges)


def caption_lines(captions: Sequence[Caption], width: int, height: int) -> list[list[int]]:
    """Caption indices grouped into lines that fit ``width`` pixels at the strip's font size (greedy, in
    time order)."""
    font = _font(max(6, int(height * 0.7)))
    sep, limit = font.getlength(" "), width - 8
    lines: list[list[int]] = []
    used = 0.0
    for i, c in enumerate(captions):
        w = font.getlength(c.text)
        if lines and used + sep + w <= limit:
            lines[-1].append(i)
            used += sep + w
        else:
            lines.append([i])
            used = w
    return lines


@dataclass
class Layout:
    """Composes ``rows x cols`` tiles of ``tile x tile`` pixels into one video frame.

    ``labels``: one per tile (row-major), drawn in a strip above each tile (empty: no label strips).
    ``audio``/``seconds``: the clip's samples and duration for a waveform strip (``audio=None``: none).
    ``captions``: tokens for a caption strip (``None``: none). ``background``: RGB 0..255 of the strips.
    """

    rows: int
    cols: int
    tile: int
    labels: Sequence[str] = ()
    audio: np.ndarray | None = None
    seconds: float = 0.0
    captions: Sequence[Caption] | None = None
    background: tuple[int, int, int] = (255, 255, 255)
    label_h: int = field(init=False)
    caption_h: int = field(init=False)
    wave_h: int = field(init=False)

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1 or self.tile < 2 or self.tile % 2:
            raise L2TError(
                f"layout: need rows, cols >= 1 and an even tile size, got {self.rows}x{self.cols}, {self.tile}"
            )
        if self.labels and len(self.labels) != self.rows * self.cols:
            raise L2TError(f"layout: {len(self.labels)} labels for {self.rows * self.cols} tiles")
        self.label_h = _even(max(12, self.tile / 12)) if self.labels else 0
        self.caption_h = _even(max(16, self.tile / 9)) if self.captions is not None else 0
        self.wave_h = _even(max(16, self.tile / 6)) if self.audio is not None else 0
        self._label_strips = [_text_strip(self.tile, self.label_h, [(t, INK)], self.background) for t in self.labels]
        self._captions = list(self.captions or ())
        self._lines = caption_lines(self._captions, self.width, self.caption_h) if self.caption_h else []
        self._caption_cache: dict[tuple[int, int], np.ndarray] = {}
        if self.wave_h:
            if not self.seconds > 0:
                raise L2TError("layout: the waveform strip needs the clip's duration")
            self._wave = {c: self._draw_wave(c) for c in (WAVE_PLAYED, WAVE_AHEAD)}

    @property
    def width(self) -> int:
        return self.cols * self.tile

    @property
    def height(self) -> int:
        return self.rows * (self.label_h + self.tile) + self.caption_h + self.wave_h

    def tile_origin(self, index: int) -> tuple[int, int]:
        """Top-left pixel (y, x) of tile ``index`` (row-major) in the frame."""
        r, c = divmod(index, self.cols)
        return r * (self.label_h + self.tile) + self.label_h, c * self.tile

    def _draw_wave(self, colour: tuple[int, int, int]) -> np.ndarray:
        lo, hi = waveform_envelope(self.audio, self.width)
        peak = max(float(np.abs(self.audio).max()), 1e-6)
        mid, half = (self.wave_h - 1) / 2.0, (self.wave_h - 2) / 2.0
        top = np.floor(mid - hi / peak * half)  # image rows grow downward
        bottom = np.ceil(mid - lo / peak * half)
        y = np.arange(self.wave_h, dtype=np.float64)[:, None]
        on = (y >= top[None]) & (y <= bottom[None])
        strip = np.empty((self.wave_h, self.width, 3), dtype=np.uint8)
        strip[:] = self.background
        strip[on] = colour
        return strip

    def _caption_strip(self, t: float) -> np.ndarray:
        line, active = -1, -1
        for k, idx in enumerate(self._lines):
            if self._captions[idx[0]].start <= t or k == 0:
                line = k
        if line >= 0:
            active = next((i for i in self._lines[line] if self._captions[i].start <= t < self._captions[i].end), -1)
        key = (line, active)
        if key not in self._caption_cache:
            parts = [] if line < 0 else [
                (self._captions[i].text, HIGHLIGHT if i == active else INK) for i in self._lines[line]
            ]  # fmt: skip
            self._caption_cache[key] = _text_strip(self.width, self.caption_h, parts, self.background)
        return self._caption_cache[key]

    def compose(self, tiles: Sequence[np.ndarray], t: float) -> np.ndarray:
        """The frame ``[height, width, 3]`` uint8 at time ``t`` seconds from ``tiles`` (row-major, each
        ``[tile, tile, 3]`` uint8)."""
        if len(tiles) != self.rows * self.cols:
            raise L2TError(f"layout: {len(tiles)} tiles for {self.rows}x{self.cols}")
        frame = np.empty((self.height, self.width, 3), dtype=np.uint8)
        for i, img in enumerate(tiles):
            y, x = self.tile_origin(i)
            if self.label_h:
                frame[y - self.label_h : y, x : x + self.tile] = self._label_strips[i]
            frame[y : y + self.tile, x : x + self.tile] = img
        y = self.rows * (self.label_h + self.tile)
        if self.caption_h:
            frame[y : y + self.caption_h] = self._caption_strip(t)
            y += self.caption_h
        if self.wave_h:
            cursor = int(np.clip(round(t / self.seconds * self.width), 0, self.width - 1))
            frame[y:, :cursor] = self._wave[WAVE_PLAYED][:, :cursor]
            frame[y:, cursor:] = self._wave[WAVE_AHEAD][:, cursor:]
            frame[y:, max(0, cursor - 1) : cursor + 1] = CURSOR
        return frame
