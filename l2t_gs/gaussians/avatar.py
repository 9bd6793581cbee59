"""``GaussianAvatar``: Gaussian splats bound to the triangles of a FLAME-format head model.

Splat parameters are stored raw (pre-activation) and *local* to their parent triangle (see
:mod:`l2t_gs.gaussians.binding`); :meth:`GaussianAvatar.deform` places them on any batch of meshes
with the avatar's topology, vectorised over frames and splats.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from l2t_gs.errors import L2TError
from l2t_gs.gaussians.binding import local_to_world, triangle_frames
from l2t_gs.rig import FlameRig, resolve_head_spec

if TYPE_CHECKING:  # the rig package is imported lazily at run time
    from l2t_gs.rig import HeadModel

#: Rig parameters of the neutral frame, unbatched: shape [S], expr [E], rotation / neck_pose /
#: jaw_pose / translation [3] (axis-angle for rotations), eyes_pose [6], static_offset [V, 3].
NEUTRAL_KEYS: tuple[str, ...] = (
    "shape", "expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "translation", "static_offset",
)  # fmt: skip
#: Optional neutral key (per-vertex offset of that frame, [V, 3]); zero when absent.
OPTIONAL_KEYS: tuple[str, ...] = ("dynamic_offset",)
#: Parameters that vary per frame (``shape`` and ``static_offset`` belong to the identity).
DYNAMIC_KEYS: tuple[str, ...] = (
    "expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "translation", "dynamic_offset",
)  # fmt: skip
_POSE_SIZES = {"rotation": 3, "neck_pose": 3, "jaw_pose": 3, "eyes_pose": 6, "translation": 3}


def sh_degree_of(sh: Tensor) -> int:
    """SH degree (0..3) of coefficients ``[N, K, 3]`` with ``K = (degree + 1)^2``."""
    k = int(sh.shape[1])
    for d in range(4):
        if (d + 1) ** 2 == k:
            return d
    raise L2TError(f"SH coefficients must have (degree+1)^2 = 1, 4, 9 or 16 per channel, got {k}")


def head_model_sizes(head_model: HeadModel) -> tuple[int, int, int, int]:
    """``(V, F, S, E)``: vertices, faces, shape and expression components of a head model."""
    return (
        int(head_model.v_template.shape[0]),
        int(head_model.faces.shape[0]),
        int(head_model.shapedirs.shape[-1]),
        int(head_model.exprdirs.shape[-1]),
    )


def default_neutral_params(head_model: HeadModel, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """All-zero neutral rig parameters sized for ``head_model`` (see :data:`NEUTRAL_KEYS`)."""
    v, _, s, e = head_model_sizes(head_model)
    params = {"shape": torch.zeros(s, dtype=dtype), "expr": torch.zeros(e, dtype=dtype)}
    params.update({k: torch.zeros(n, dtype=dtype) for k, n in _POSE_SIZES.items()})
    params["static_offset"] = torch.zeros(v, 3, dtype=dtype)
    return params


def head_model_spec_of(head_model: HeadModel) -> str:
    """``"builtin"`` if ``head_model`` was loaded from the built-in head, else its source file or ``""``."""
    source = str(getattr(head_model, "source", "") or "")
    if not source:
        return ""
    if source == "builtin":
        return "builtin"
    path = Path(source)
    if not path.is_file():
        return ""
    try:
        if path.resolve() == resolve_head_spec("builtin").resolve():
            return "builtin"
    except L2TError:  # no built-in head installed
        pass
    return str(path.resolve())


def _pad_coefficients(params: dict[str, Tensor], head_model: HeadModel) -> dict[str, Tensor]:
    """Zero-pad ``shape`` / ``expr`` vectors shorter than the head model's bases (as the rig does)."""
    _, _, s, e = head_model_sizes(head_model)
    for key, size in (("shape", s), ("expr", e)):
        value = params.get(key)
        if value is not None and value.dim() == 1 and value.shape[0] < size:
            params[key] = torch.nn.functional.pad(value, (0, size - value.shape[0]))
    return params


def _compiled_deform_usable(vertices: Tensor, *local: Tensor) -> bool:
    """Whether :mod:`l2t_gs.gaussians.deform_fast` can take this deformation: CPU float tensors, no
    gradient wanted, numba installed (checked last: its import is the slow part)."""
    if vertices.device.type != "cpu" or vertices.dtype not in (torch.float32, torch.float64):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in (vertices, *local)):
        return False
    return _numba_available()


@functools.lru_cache(maxsize=1)
def _numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


@dataclass
class SplatFrames:
    """World-space splats of ``B`` frames (activated values).

    Attributes:
        means: ``[B, N, 3]``. quats: ``[B, N, 4]`` unit wxyz. scales: ``[B, N, 3]`` (``exp``-ed).
        opacities: ``[N]`` in ``(0, 1)``. sh: ``[N, K, 3]`` SH coefficients (not rotated, as in
        GaussianAvatars: view directions are taken in world space). sh_degree: ``0..3``.
    """

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    sh: Tensor
    sh_degree: int

    def __len__(self) -> int:
        return int(self.means.shape[0])

    def frame(self, index: int = 0) -> dict[str, Any]:
        """Keyword arguments of one frame for :func:`l2t_gs.render.rasterize`.

        ``means [N,3], quats [N,4], scales [N,3], opacities [N], colors [N,K,3], sh_degree``.
        """
        if not -len(self) <= index < len(self):
            raise L2TError(f"frame {index} out of range: {len(self)} frame(s)")
        return {
            "means": self.means[index],
            "quats": self.quats[index],
            "scales": self.scales[index],
            "opacities": self.opacities,
            "colors": self.sh,
            "sh_degree": self.sh_degree,
        }


@dataclass(eq=False)
class GaussianAvatar:
    """Splats bound to a head model's triangles, plus the head model and its neutral parameters.

    Attributes:
        means: ``[N, 3]`` local positions (units of the parent triangle's scale ``k``).
        log_scales: ``[N, 3]`` local log-scales. quats: ``[N, 4]`` local rotations, wxyz, raw.
        opacity_logits: ``[N]``. sh: ``[N, K, 3]`` SH coefficients, DC first, ``K = (d+1)^2``.
        binding: ``[N]`` int64 parent triangle of each splat.
        head_model: the FLAME-format head model (``l2t_gs.rig.HeadModel``).
        neutral_params: unbatched rig parameters of the neutral frame (:data:`NEUTRAL_KEYS`,
            optionally ``dynamic_offset``).
        head_model_spec: ``"builtin"``, the path of the head model's file, or ``""`` (no file: saving
            writes the model out); ``None`` derives it from ``head_model.source``.
        name: display name. notes: free text kept in ``avatar.json``.
    """

    means: Tensor
    log_scales: Tensor
    quats: Tensor
    opacity_logits: Tensor
    sh: Tensor
    binding: Tensor
    head_model: HeadModel
    neutral_params: dict[str, Tensor]
    head_model_spec: str | None = None
    name: str = "avatar"
    notes: str = ""
    _rig: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.binding = torch.as_tensor(self.binding).long()
        if self.head_model_spec is None:
            self.head_model_spec = head_model_spec_of(self.head_model)
        self.neutral_params = _pad_coefficients(dict(self.neutral_params), self.head_model)
        self.validate()

    # ------------------------------------------------------------------ properties
    @property
    def num_splats(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return sh_degree_of(self.sh)

    @property
    def n_verts(self) -> int:
        return int(self.head_model.v_template.shape[0])

    @property
    def faces(self) -> Tensor:
        """``[F, 3]`` int64 triangles of the head model."""
        return torch.as_tensor(self.head_model.faces).long()

    @property
    def num_faces(self) -> int:
        return int(self.head_model.faces.shape[0])

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check shapes, finiteness, binding range and parameter sizes; raise one-line L2TError."""
        n = self.num_splats
        who = f"avatar '{self.name}'"
        expected = {
            "means": (n, 3), "log_scales": (n, 3), "quats": (n, 4), "opacity_logits": (n,),
            "binding": (n,),
        }  # fmt: skip
        for key, shape in expected.items():
            value = getattr(self, key)
            if tuple(value.shape) != shape:
                raise L2TError(f"{who}: {key} has shape {list(value.shape)}, expected {list(shape)}")
        if self.sh.dim() != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise L2TError(f"{who}: sh has shape {list(self.sh.shape)}, expected [{n}, K, 3]")
        sh_degree_of(self.sh)
        for key in ("means", "log_scales", "quats", "opacity_logits", "sh"):
            value = getattr(self, key)
            if not value.is_floating_point():
                raise L2TError(f"{who}: {key} must be floating point, got {value.dtype}")
            bad = ~torch.isfinite(value)
            if bool(bad.any()):
                raise L2TError(f"{who}: {int(bad.sum())} non-finite (NaN/Inf) value(s) in {key}")
        zero_quats = int(((self.quats * self.quats).sum(-1) < 1e-20).sum())
        if zero_quats:
            raise L2TError(f"{who}: {zero_quats} zero quaternion(s) (cannot be normalised)")
        f = self.num_faces
        if n:
            out = (self.binding < 0) | (self.binding >= f)
            if bool(out.any()):
                raise L2TError(
                    f"{who}: binding out of range: {int(out.sum())} splat(s) bound to triangles outside "
                    f"[0, {f}) (max {int(self.binding.max())}, min {int(self.binding.min())}); "
                    "the head model has a different topology"
                )
        self._validate_params(self.neutral_params, who)

    def _validate_params(self, params: dict[str, Tensor], who: str) -> None:
        v, _, s, e = head_model_sizes(self.head_model)
        missing = [k for k in NEUTRAL_KEYS if k not in params]
        if missing:
            raise L2TError(f"{who}: neutral rig parameters lack {', '.join(missing)}")
        sizes = {"shape": (s,), "expr": (e,), **{k: (m,) for k, m in _POSE_SIZES.items()}}
        sizes["static_offset"] = (v, 3)
        if "dynamic_offset" in params:
            sizes["dynamic_offset"] = (v, 3)
        for key, shape in sizes.items():
            value = params[key]
            if tuple(value.shape) != shape:
                raise L2TError(
                    f"{who}: neutral parameter {key} has shape {list(value.shape)}, the head model needs {list(shape)}"
                )
            if not bool(torch.isfinite(value).all()):
                raise L2TError(f"{who}: neutral parameter {key} has non-finite values")

    def check_topology(self, n_verts: int, faces: Tensor | None = None) -> None:
        """Raise L2TError unless a mesh with ``n_verts`` (and ``faces`` [F,3]) matches the avatar."""
        if n_verts != self.n_verts:
            raise L2TError(
                f"topology mismatch: the mesh has {n_verts} vertices, avatar '{self.name}' expects {self.n_verts}"
            )
        if faces is not None:
            if tuple(faces.shape) != (self.num_faces, 3):
                raise L2TError(
                    f"topology mismatch: the mesh has {faces.shape[0]} faces, avatar '{self.name}' "
                    f"expects {self.num_faces}"
                )
            if not torch.equal(torch.as_tensor(faces).long().cpu(), self.faces.cpu()):
                raise L2TError(f"topology mismatch: the mesh's faces differ from avatar '{self.name}'")

    # ------------------------------------------------------------------ deformation
    def deform(self, vertices: Tensor, faces: Tensor | None = None) -> SplatFrames:
        """Place the splats on meshes.

        Args:
            vertices: ``[B, V, 3]`` (or ``[V, 3]``) meshes with the head model's topology.
            faces: optional ``[F, 3]`` faces of those meshes, checked against the head model's.

        Returns:
            :class:`SplatFrames` with ``B`` frames.
        """
        if vertices.dim() == 2:
            vertices = vertices[None]
        if vertices.dim() != 3 or vertices.shape[-1] != 3:
            raise L2TError(f"vertices must have shape [B, V, 3], got {list(vertices.shape)}")
        self.check_topology(int(vertices.shape[1]), faces)
        dtype, device = vertices.dtype, vertices.device
        local = (self.means.to(device, dtype), self.log_scales.to(device, dtype), self.quats.to(device, dtype))
        if _compiled_deform_usable(vertices, *local):
            from l2t_gs.gaussians.deform_fast import deform_one

            per_frame = [deform_one(v, self.faces, self.binding, *local) for v in vertices]
            means, quats, log_scales = (torch.stack(t) for t in zip(*per_frame, strict=True))
        else:
            frames = triangle_frames(vertices, self.faces.to(device))
            means, quats, log_scales = local_to_world(frames, self.binding.to(device), local[0], local[1], local[2])
        return SplatFrames(
            means=means,
            quats=quats,
            scales=torch.exp(log_scales),
            opacities=torch.sigmoid(self.opacity_logits.to(device, dtype)),
            sh=self.sh.to(device, dtype),
            sh_degree=self.sh_degree,
        )

    def rig(self) -> Any:
        """The (cached) ``l2t_gs.rig.FlameRig`` of the head model."""
        if self._rig is None:
            self._rig = FlameRig(self.head_model)
        return self._rig

    def vertices_from_params(self, params: dict[str, Tensor]) -> Tensor:
        """Mesh vertices ``[B, V, 3]`` for rig parameters.

        ``params`` may hold any subset of the rig's inputs; missing ones come from the neutral
        frame. Per-frame keys (:data:`DYNAMIC_KEYS`) are either unbatched (like the neutral
        parameters) or batched with a leading ``[B]``; ``shape`` and ``static_offset`` are shared.
        """
        merged = {**self.neutral_params, **params}
        sizes = {k: tuple(v.shape) for k, v in self.neutral_params.items()}
        sizes.setdefault("dynamic_offset", (self.n_verts, 3))
        batch = 1
        for key in DYNAMIC_KEYS:
            if key in params and params[key].dim() == len(sizes[key]) + 1:
                batch = max(batch, int(params[key].shape[0]))
        rig = self.rig()
        buffer = next(iter(rig.buffers()), None) if hasattr(rig, "buffers") else None
        device = buffer.device if buffer is not None else torch.device("cpu")
        dtype = buffer.dtype if buffer is not None and buffer.is_floating_point() else self.means.dtype
        inputs: dict[str, Tensor] = {}
        for key in (*NEUTRAL_KEYS, "dynamic_offset"):
            value = merged.get(key)
            if value is None:
                value = torch.zeros(sizes[key])
            value = torch.as_tensor(value).to(device=device, dtype=dtype)
            if tuple(value.shape) == sizes[key]:
                value = value[None]
            if tuple(value.shape[1:]) != sizes[key] or value.shape[0] not in (1, batch):
                raise L2TError(
                    f"rig parameter {key} has shape {list(value.shape)}, expected {list(sizes[key])} "
                    f"or [{batch}, {', '.join(map(str, sizes[key]))}]"
                )
            inputs[key] = value.expand(batch, *sizes[key])
        with torch.no_grad():
            return rig(**inputs)

    def neutral_vertices(self) -> Tensor:
        """``[V, 3]`` vertices of the neutral frame."""
        return self.vertices_from_params({})[0]

    def splat_params(self, frame: SplatFrames | Tensor | None = None, index: int = 0) -> dict[str, Any]:
        """Rasterizer-ready keyword arguments of one frame (see :meth:`SplatFrames.frame`).

        ``frame`` is a :class:`SplatFrames` (``index`` picks the frame), mesh vertices
        (``[V, 3]`` or ``[B, V, 3]``), or ``None`` for the neutral frame.
        """
        if frame is None:
            frame = self.neutral_vertices()
        if isinstance(frame, Tensor):
            frame = self.deform(frame if frame.dim() == 2 else frame[index : index + 1])
            index = 0
        return frame.frame(index)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> GaussianAvatar:
        """A copy with the splat tensors and neutral parameters moved/cast (the head model is shared)."""

        def move(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        kwargs = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        for key in ("means", "log_scales", "quats", "opacity_logits", "sh", "binding"):
            kwargs[key] = move(kwargs[key])
        kwargs["neutral_params"] = {k: move(v) for k, v in self.neutral_params.items()}
        return GaussianAvatar(**kwargs)
