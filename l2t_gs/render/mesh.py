"""A small vectorized triangle-mesh rasterizer (z-buffer, Lambert shading) for previews and docs.

Not the avatar renderer (that is :func:`l2t_gs.render.rasterize` over Gaussian splats): this draws a
plain shaded mesh so that the head model can be looked at with the project's own code.
Cameras follow the OpenCV convention used everywhere in l2t-gs (world-to-camera ``viewmat``,
+z forward, +y down, pixel centres at integer + 0.5).
"""

from __future__ import annotations

import numpy as np
import torch

_DEPTH_BITS = 40  # depth quantisation inside the packed z-buffer key
_FACE_BITS = 23  # up to 8M faces


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals. verts [V,3], faces [F,3] -> [V,3]."""
    v0, v1, v2 = (verts[faces[:, k]] for k in range(3))
    fn = torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)
    vn = torch.zeros_like(verts).index_add_(0, faces.reshape(-1), fn.repeat_interleave(3, dim=0))
    return torch.nn.functional.normalize(vn, dim=-1, eps=1e-12)


def _candidates(
    px: torch.Tensor, bbox: torch.Tensor, width: int, height: int, max_cells: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Group faces by bounding-box size; yield (face ids [n], pixel xy [n, S*S, 2]) chunks."""
    size = torch.maximum(bbox[:, 2] - bbox[:, 0], bbox[:, 3] - bbox[:, 1]) + 1
    out = []
    lo = 0
    for s in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096):
        sel = torch.nonzero((size > lo) & (size <= s)).squeeze(1)
        lo = s
        if sel.numel() == 0:
            continue
        oy, ox = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
        off = torch.stack([ox.reshape(-1), oy.reshape(-1)], dim=-1)  # [S*S,2]
        chunk = max(1, max_cells // (s * s))
        for start in range(0, sel.numel(), chunk):
            ids = sel[start : start + chunk]
            xy = bbox[ids, None, :2] + off[None]  # [n,S*S,2]
            out.append((ids, xy))
    return out


@torch.no_grad()
def render_mesh(
    verts: torch.Tensor,
    faces: torch.Tensor,
    viewmat: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    *,
    vertex_colors: torch.Tensor | None = None,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    light_dir: tuple[float, float, float] = (-0.35, 0.5, 1.0),
    ambient: float = 0.3,
    near: float = 1e-3,
    max_cells: int = 4_000_000,
) -> np.ndarray:
    """Render a shaded mesh; returns an RGB uint8 image [H,W,3].

    verts [V,3] world space, faces [F,3], viewmat [4,4] world-to-camera, K [3,3],
    vertex_colors [V,3] in 0..1 (default light grey). ``light_dir`` is the direction light travels, in camera space.
    Both sides of each triangle are lit (the normal is flipped toward the camera).
    """
    verts = verts.detach().to(torch.float64).cpu()
    faces = faces.long().cpu()
    viewmat = viewmat.detach().to(torch.float64).cpu()
    K = K.detach().to(torch.float64).cpu()
    cam = verts @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = cam[:, 2]
    px = torch.stack([K[0, 0] * cam[:, 0] / z + K[0, 2], K[1, 1] * cam[:, 1] / z + K[1, 2]], dim=-1)  # [V,2]
    fz = z[faces]  # [F,3]
    fpx = px[faces]  # [F,3,2]
    keep = (fz > near).all(dim=1)
    lo = torch.floor(fpx.min(dim=1).values - 0.5).long()
    hi = torch.ceil(fpx.max(dim=1).values - 0.5).long()
    lo[:, 0].clamp_(0, width - 1)
    lo[:, 1].clamp_(0, height - 1)
    hi[:, 0].clamp_(0, width - 1)
    hi[:, 1].clamp_(0, height - 1)
    onscreen = (fpx[..., 0].max(1).values >= 0) & (fpx[..., 0].min(1).values <= width)
    onscreen &= (fpx[..., 1].max(1).values >= 0) & (fpx[..., 1].min(1).values <= height)
    face_ids = torch.nonzero(keep & onscreen).squeeze(1)
    bbox = torch.cat([lo, hi], dim=1)[face_ids]

    zmax = float(fz[face_ids].max()) if face_ids.numel() else 1.0
    scale = (2**_DEPTH_BITS - 1) / (zmax * 1.001)
    empty = torch.iinfo(torch.int64).max
    zbuf = torch.full((height * width,), empty, dtype=torch.int64)
    for ids, xy in _candidates(px, bbox, width, height, max_cells):
        fid = face_ids[ids]
        p = xy.to(torch.float64) + 0.5  # pixel centres [n,M,2]
        a, b, c = (fpx[fid, k][:, None, :] for k in range(3))  # [n,1,2]

        def edge(p0, p1, q):
            return (p1[..., 0] - p0[..., 0]) * (q[..., 1] - p0[..., 1]) - (p1[..., 1] - p0[..., 1]) * (
                q[..., 0] - p0[..., 0]
            )

        area = edge(a, b, c)  # [n,1]
        w0, w1, w2 = edge(b, c, p) / area, edge(c, a, p) / area, edge(a, b, p) / area
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0) & (area.abs() > 1e-12)
        inside &= (xy[..., 0] <= bbox[ids, None, 2]) & (xy[..., 1] <= bbox[ids, None, 3])
        inv_z = w0 / fz[fid, 0, None] + w1 / fz[fid, 1, None] + w2 / fz[fid, 2, None]
        depth = 1.0 / inv_z.clamp_min(1e-12)
        n_idx, m_idx = torch.nonzero(inside, as_tuple=True)
        pix = xy[n_idx, m_idx, 1] * width + xy[n_idx, m_idx, 0]
        key = (depth[n_idx, m_idx] * scale).long().clamp(0, 2**_DEPTH_BITS - 1) << _FACE_BITS
        key |= fid[n_idx]
        zbuf.scatter_reduce_(0, pix, key, reduce="amin")

    bg = torch.tensor(background, dtype=torch.float64)
    img = bg.expand(height * width, 3).clone()
    hit = torch.nonzero(zbuf != empty).squeeze(1)
    if hit.numel():
        fid = zbuf[hit] & ((1 << _FACE_BITS) - 1)
        py, pxl = hit // width, hit % width
        p = torch.stack([pxl, py], dim=-1).to(torch.float64) + 0.5
        a, b, c = (fpx[fid, k] for k in range(3))
        area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])

        def e2(p0, p1, q):
            return (p1[:, 0] - p0[:, 0]) * (q[:, 1] - p0[:, 1]) - (p1[:, 1] - p0[:, 1]) * (q[:, 0] - p0[:, 0])

        bary = torch.stack([e2(b, c, p), e2(c, a, p), e2(a, b, p)], dim=-1) / area[:, None]
        # perspective-correct barycentrics
        bary = bary / fz[fid]
        bary = bary / bary.sum(dim=-1, keepdim=True)
        vn_cam = vertex_normals(cam, faces)
        n = torch.nn.functional.normalize((bary[..., None] * vn_cam[faces[fid]]).sum(1), dim=-1)
        pos = (bary[..., None] * cam[faces[fid]]).sum(1)
        n = torch.where(((n * pos).sum(-1, keepdim=True) > 0), -n, n)  # face the camera
        light = torch.nn.functional.normalize(torch.tensor(light_dir, dtype=torch.float64), dim=0)
        lambert = (n @ -light).clamp_min(0.0)
        if vertex_colors is None:
            col = torch.full((hit.numel(), 3), 0.8, dtype=torch.float64)
        else:
            vc = vertex_colors.detach().to(torch.float64).cpu()
            col = (bary[..., None] * vc[faces[fid]]).sum(1)
        img[hit] = col * (ambient + (1 - ambient) * lambert[:, None])
    return (img.reshape(height, width, 3).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
