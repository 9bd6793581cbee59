"""Appearance of a photo avatar: the default avatar's splats coloured from the photo, then refined.

1. **Projection** (:func:`photo_colors`): each splat of the fitted neutral frame is projected into
   the photo; it takes the photo's colour where it is visible (its depth agrees with the rendered
   depth map of all splats and its triangle faces the camera), else the colour of its mirror image
   (x -> -x in the head's frame) where that one is visible, else the photo's mean colour of its
   region (lips, scalp, ears, skin) plus half the template's brightness variation around its mean. Weights blend the
   three smoothly by the facing ratio. Eyeballs, teeth, the mouth interior and the eyelid rims keep
   the template's colours (the photo rarely shows them usefully); the lips take the photo's; the neck
   takes the face's skin tone (under a chin the photo shows collars and shadow). No splat takes a
   colour from inside the photo's mouth opening (:func:`mouth_opening_mask`) but the teeth and the
   mouth interior, which take it from there only: with the mouth open the photo shows the person's
   teeth and the dark interior there, which must not be painted onto the lips (lip splats that see
   only the opening take the photo's mean lip colour).
2. **Photometric refinement** (:func:`refine`): colours, opacities, small local offsets and scales
   of the splats seen in the photo are optimised through the differentiable rasterizer
   (``torch-pure``) against a crop of the photo around the face, masked to the face outline, with
   regularisers that keep splats near their triangles, their sizes near the template's and their
   colours near the projected ones (unseen parts stay consistent).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from l2t_gs.gaussians.avatar import GaussianAvatar
from l2t_gs.gaussians.binding import local_to_world, triangle_frames
from l2t_gs.render import rasterize
from l2t_gs.render.sh import SH_C0

__all__ = ["KEEP_TEMPLATE", "face_region_mask", "mouth_opening_mask", "photo_colors", "psnr", "refine", "render_view"]

#: Regions whose splats keep the template's colours (the teeth and the mouth interior only where the
#: photo's mouth opening does not show them).
KEEP_TEMPLATE = ("eyes", "eye_left", "eye_right", "teeth_upper", "teeth_lower", "mouth_interior", "eyelid_rims")
#: What the mouth opening shows.
MOUTH_INSIDE = ("teeth_upper", "teeth_lower", "mouth_interior")
_REGIONS = ("lips", "scalp", "ears", "neck")
_LUMA = np.array([0.299, 0.587, 0.114])
#: Height (metres, head frame) above which the scalp's photo colour is taken as the hair colour.
HAIR_HEIGHT = 0.085


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _face_mask_of_regions(avatar: GaussianAvatar, names: tuple[str, ...]) -> np.ndarray:
    """[F] bool: triangles with at least two vertices in any of the named regions."""
    v = np.zeros(avatar.n_verts, bool)
    for name in names:
        idx = avatar.head_model.masks.get(name)
        if idx is not None:
            v[np.asarray(idx.cpu())] = True
    return v[avatar.faces.numpy()].sum(1) >= 2


def render_view(
    avatar: GaussianAvatar, verts: Tensor, viewmat: Tensor, K: Tensor, width: int, height: int, depth: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Forward render (no gradient): (RGB float [H, W, 3] on white, or expected depth [H, W]; alpha [H, W])."""
    with torch.no_grad():
        out, alpha, _ = rasterize(
            **avatar.splat_params(verts.float()), viewmats=viewmat[None].float(), Ks=K[None].float(),
            width=width, height=height, backgrounds=None if depth else torch.ones(1, 3),
            render_mode="ED" if depth else "RGB", backend="torch",
        )  # fmt: skip
    return out[0, ..., 0 if depth else slice(None)].numpy(), alpha[0, ..., 0].numpy()


def _sample(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image [H, W, C]`` at pixel positions ``xy [N, 2]`` (pixel centres at +0.5)."""
    h, w = image.shape[:2]
    p = np.nan_to_num(xy - 0.5)
    x = np.clip(p[:, 0], 0, w - 1)
    y = np.clip(p[:, 1], 0, h - 1)
    x0, y0 = np.minimum(x.astype(int), w - 2), np.minimum(y.astype(int), h - 2)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    img = image.reshape(h, w, -1)
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bottom = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


@dataclass
class ProjectedColors:
    """Per-splat colours [N, 3] and how they were obtained (``direct`` / ``mirror`` weights [N] of the
    splats outside the template regions, which the refinement may change)."""

    colors: np.ndarray
    direct: np.ndarray
    mirror: np.ndarray
    keep: np.ndarray  # [N] bool: in a template region (eyes, lids; teeth and interior unless seen)
    visible: np.ndarray  # [N] bool: in front (not hidden by other splats) in the photo's view


def photo_colors(
    avatar: GaussianAvatar,
    verts: Tensor,
    photo: np.ndarray,
    viewmat: Tensor,
    K: Tensor,
    opening: np.ndarray | None = None,
) -> ProjectedColors:
    """Colour every splat of ``avatar`` (placed on ``verts [V, 3]``) from ``photo`` (float RGB [H, W, 3]).

    ``opening [H, W] bool``: the photo's mouth opening (:func:`mouth_opening_mask`). Only the teeth and
    the mouth interior take colours from inside it, and only from inside it.
    """
    h, w = photo.shape[:2]
    depth, alpha = render_view(avatar, verts, viewmat, K, w, h, depth=True)
    splats = avatar.deform(verts.float())
    means = splats.means[0].double().numpy()
    faces = avatar.faces.numpy()
    vv = verts.double().numpy()
    tri = vv[faces[avatar.binding.numpy()]]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    vm, km = viewmat.double().numpy(), K.double().numpy()
    centre = -vm[:3, :3].T @ vm[:3, 3]
    blurred = cv2.GaussianBlur(photo.astype(np.float32), (0, 0), 0.8)
    depth32 = np.ascontiguousarray(depth, dtype=np.float32)[..., None]
    alpha32 = np.ascontiguousarray(alpha, dtype=np.float32)[..., None]

    binding = avatar.binding.numpy()
    mouth = _face_mask_of_regions(avatar, MOUTH_INSIDE)[binding]  # [N]: teeth and mouth interior
    if opening is None:  # the teeth and the interior keep the template's colours
        mouth = np.zeros_like(mouth)
    keep = _face_mask_of_regions(avatar, KEEP_TEMPLATE)[binding] & ~mouth

    def seen(p: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Pixel positions, photo-colour weights, visibility and (visible and) inside the opening."""
        cam = p @ vm[:3, :3].T + vm[:3, 3]
        xy = cam[:, :2] / np.maximum(cam[:, 2:], 1e-6) * km[[0, 1], [0, 1]] + km[:2, 2]
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h) & (cam[:, 2] > 0)
        d = _sample(depth32, xy)[:, 0]
        a = _sample(alpha32, xy)[:, 0]
        to_cam = centre - p
        facing = (n * to_cam).sum(1) / np.maximum(np.linalg.norm(to_cam, axis=1), 1e-12)
        ok = inside & (a > 0.5) & (cam[:, 2] <= d + 0.004)  # d: expected depth (ED)
        in_opening = np.zeros_like(ok)
        if opening is not None:
            in_opening = ok & (_sample(opening.astype(np.float32)[..., None], xy)[:, 0] >= 0.5)
            ok &= in_opening == mouth
        return xy, np.where(ok, _smoothstep(0.2, 0.55, facing), 0.0), ok, in_opening

    xy, w_direct, visible, lips_edge = seen(means, normal)
    flip = np.array([-1.0, 1.0, 1.0])
    xy_m, w_mirror, _, _ = seen(means * flip, normal * flip)
    c_direct = _sample(blurred, xy)
    c_mirror = _sample(blurred, xy_m)

    sh0 = avatar.sh[:, 0].double().numpy()
    default = np.clip(sh0 * SH_C0 + 0.5, 0.0, 1.0)
    neck = (
        _face_mask_of_regions(avatar, ("neck",))[avatar.binding.numpy()]
        & ~_face_mask_of_regions(avatar, ("face",))[avatar.binding.numpy()]
    )
    # the photo's neck is usually collar or shadow: the neck takes the face's skin tone instead
    w_direct[neck] = 0.0
    w_mirror[neck] = 0.0
    # what the photo cannot see: the photo's mean colour of the region plus half the template's variation
    region_of = np.zeros(len(means), int)  # 0: skin, k: _REGIONS[k - 1]
    for k, name in enumerate(_REGIONS, start=1):
        region_of[_face_mask_of_regions(avatar, (name,))[avatar.binding.numpy()]] = k
    region_of[neck] = len(_REGIONS)
    fallback = default.copy()
    skin_mean = None
    for k in range(len(_REGIONS) + 1):
        sel = (region_of == k) & ~keep
        good = sel & (w_direct > 0.6)
        if k and _REGIONS[k - 1] == "scalp":  # hair: the top of the head, above the hairline
            good = sel & (w_direct > 0.2) & (means[:, 1] > HAIR_HEIGHT)
        if good.sum() >= 20:
            mean = c_direct[good].mean(0)
        else:
            mean = skin_mean if skin_mean is not None else default[sel].mean(0) if sel.any() else np.full(3, 0.5)
        if k == 0:
            skin_mean = mean
        if sel.any():
            shade = default[sel] @ _LUMA  # the template's variation as brightness only: no tint of its own
            fallback[sel] = mean + 0.5 * (shade - shade.mean())[:, None]
    fallback = np.clip(fallback, 0.0, 1.0)
    colors = w_direct[:, None] * c_direct + (1 - w_direct[:, None]) * (
        w_mirror[:, None] * c_mirror + (1 - w_mirror[:, None]) * fallback
    )
    colors[keep] = default[keep]
    if opening is not None:
        # the lips' inner edge where it covers the opening: the photo's dark line between the lips, never
        # its teeth (the photo's colour only where darker than the lip colour)
        lips_edge &= _face_mask_of_regions(avatar, ("lips",))[binding]
        colors[lips_edge] = np.minimum(colors[lips_edge], c_direct[lips_edge])
        # teeth and interior the photo does not show: the template's
        w_mouth = w_direct[mouth][:, None]
        colors[mouth] = w_mouth * c_direct[mouth] + (1 - w_mouth) * default[mouth]
        w_mirror[mouth] = 0.0
    template = keep | mouth
    return ProjectedColors(np.clip(colors, 0.0, 1.0), w_direct * ~template, w_mirror * ~template, template, visible)


def _polygon_mask(landmarks: np.ndarray, ring: tuple[int, ...], width: int, height: int) -> np.ndarray:
    """[H, W] bool: inside the polygon of the face-mesh points ``ring`` (indices into ``landmarks``)."""
    mask = np.zeros((height, width), np.uint8)
    poly = np.round(np.asarray(landmarks)[list(ring), :2] * 16).astype(np.int32)
    cv2.fillPoly(mask, [poly], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def face_region_mask(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """[H, W] bool: inside the face outline of face-mesh landmarks [468, >=2]."""
    from l2t_gs.authoring.photo.landmarks import FACE_OVAL

    return _polygon_mask(landmarks, FACE_OVAL, width, height)


def mouth_opening_mask(landmarks: np.ndarray, width: int, height: int, grow: float = 0.03) -> np.ndarray:
    """[H, W] bool: between the inner lips of face-mesh landmarks [468, >=2] (teeth, tongue, the dark
    interior when the mouth is open; a sliver when it is shut), grown by ``grow`` eye distances."""
    from l2t_gs.authoring.photo.landmarks import LIPS_INNER, inter_ocular

    mask = _polygon_mask(landmarks, LIPS_INNER, width, height).astype(np.uint8)
    r = int(round(grow * inter_ocular(np.asarray(landmarks))))
    if r > 0:
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return mask.astype(bool)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB) of two float images in [0, 1] over the pixels of ``mask``."""
    mse = float(((a - b) ** 2)[mask].mean())
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


def refine(
    avatar: GaussianAvatar,
    verts: Tensor,
    photo: np.ndarray,
    viewmat: Tensor,
    K: Tensor,
    mask: np.ndarray,
    trainable: np.ndarray,
    relevant: np.ndarray | None = None,
    *,
    steps: int = 60,
    max_side: int = 192,
    seed: int = 0,
) -> tuple[GaussianAvatar, list[float]]:
    """Photometric refinement of the splats ``trainable [N] bool`` against ``photo`` (float RGB [H, W, 3]).

    Only ``relevant [N] bool`` splats (default: all) are rendered: those in front in the photo's view.

    Works on a crop of the photo around ``mask`` (the face region, [H, W] bool) scaled to at most
    ``max_side`` pixels. Returns the refined avatar and the masked MSE per step.
    """
    torch.manual_seed(seed)
    h, w = photo.shape[:2]
    ys, xs = np.nonzero(mask)
    cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
    side = 1.15 * max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    s = min(1.0, max_side / side)
    size = int(round(side * s))
    x0, y0 = cx - side / 2, cy - side / 2
    # the crop: pixel (u, v) of the crop is photo pixel (x0 + u / s, y0 + v / s)
    affine = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]])
    target = cv2.warpAffine(photo.astype(np.float32), affine, (size, size), flags=cv2.INTER_AREA)
    m = cv2.warpAffine(mask.astype(np.float32), affine, (size, size), flags=cv2.INTER_LINEAR) > 0.5
    kc = K.double().clone()
    kc[0, 0], kc[1, 1] = kc[0, 0] * s, kc[1, 1] * s
    kc[0, 2], kc[1, 2] = (kc[0, 2] - x0) * s, (kc[1, 2] - y0) * s

    frames = triangle_frames(verts.float()[None], avatar.faces)
    binding = avatar.binding
    sel = torch.as_tensor(trainable)
    with torch.no_grad():  # splats that can matter in the crop: in front and inside it
        means_w, _, _ = local_to_world(frames, binding, avatar.means, avatar.log_scales, avatar.quats)
        cam = means_w[0] @ viewmat[:3, :3].T.float() + viewmat[:3, 3].float()
        uv = cam[:, :2] / cam[:, 2:].clamp_min(1e-6) * torch.stack([kc[0, 0], kc[1, 1]]).float() + kc[:2, 2].float()
        inside = (uv >= -8).all(1) & (uv < size + 8).all(1) & (cam[:, 2] > 0)
        if relevant is not None:
            inside &= torch.as_tensor(relevant)
    active = inside.nonzero().squeeze(1)
    train = sel[active]
    n = len(active)
    sh0 = avatar.sh[active, 0].clone()
    d_color = torch.zeros(n, 3, requires_grad=True)
    d_opacity = torch.zeros(n, requires_grad=True)
    d_means = torch.zeros(n, 3, requires_grad=True)
    d_scales = torch.zeros(n, 3, requires_grad=True)
    opt = torch.optim.Adam(
        [
            {"params": [d_color], "lr": 0.05},
            {"params": [d_opacity], "lr": 0.05},
            {"params": [d_means], "lr": 0.01},
            {"params": [d_scales], "lr": 0.01},
        ]
    )
    tgt = torch.as_tensor(target)
    mk = torch.as_tensor(m)[..., None].float()
    gate = train[:, None].float()
    vm = viewmat[None].float()
    kk = kc[None].float()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        means, quats, log_scales = local_to_world(
            frames, binding[active], avatar.means[active] + gate * d_means,
            avatar.log_scales[active] + gate * d_scales, avatar.quats[active],
        )  # fmt: skip
        colors = (sh0 + gate * d_color / SH_C0)[:, None]
        opac = torch.sigmoid(avatar.opacity_logits[active] + gate[:, 0] * d_opacity)
        rgb, _, _ = rasterize(
            means[0], quats[0], torch.exp(log_scales[0]), opac, colors, vm, kk, size, size,
            sh_degree=0, backgrounds=torch.ones(1, 3), backend="torch-pure",
        )  # fmt: skip
        err = (rgb[0] - tgt) * mk
        mse = (err**2).sum() / (mk.sum() * 3)
        loss = mse + 0.3 * err.abs().sum() / (mk.sum() * 3)
        loss = loss + 1e-3 * (d_means**2).sum(1).mean() + 1e-3 * (d_scales**2).sum(1).mean()
        loss = loss + 1e-4 * (d_color**2).sum(1).mean()
        loss.backward()
        opt.step()
        with torch.no_grad():  # keep splats on their triangles (local units) and sizes near the template
            base = sh0 * SH_C0 + 0.5  # colours stay displayable
            d_color.copy_(torch.minimum(torch.maximum(d_color, -base), 1.0 - base))
            # local axis 1 is the triangle's normal: splats stay flat and near their surface
            d_means.clamp_(-0.3, 0.3)
            d_means[:, 1].clamp_(-0.05, 0.05)
            d_scales.clamp_(-0.7, 0.7)
            d_scales[:, 1] = 0.0
        losses.append(float(mse.detach()))
    out_means = avatar.means.clone()
    out_scales = avatar.log_scales.clone()
    out_sh = avatar.sh.clone()
    out_op = avatar.opacity_logits.clone()
    with torch.no_grad():
        out_means[active] += gate * d_means
        out_scales[active] += gate * d_scales
        out_sh[active, 0] += gate * d_color / SH_C0
        out_op[active] += gate[:, 0] * d_opacity
    refined = GaussianAvatar(
        means=out_means, log_scales=out_scales, quats=avatar.quats, opacity_logits=out_op, sh=out_sh,
        binding=avatar.binding, head_model=avatar.head_model, neutral_params=avatar.neutral_params,
        head_model_spec=avatar.head_model_spec, name=avatar.name, notes=avatar.notes,
    )  # fmt: skip
    return refined, losses
