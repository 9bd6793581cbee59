"""Full renders of the torch backends against an independent brute-force renderer.

The reference below projects every splat with its own numpy code and composites every pixel
against every splat in depth order, with gsplat's rules: alpha = min(0.999, o * exp(-sigma)),
contributions with alpha < 1/255 skipped, and a pixel stopped before the splat that would bring
its transmittance to 1e-4 or below. No tiles, no extents, no culling besides the near/far planes:
if the renderers' tiling or culling dropped a contribution, the comparison would catch it.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from l2t_gs.errors import L2TError
from l2t_gs.render import look_at, rasterize
from l2t_gs.render.backend_cpu import fast_cpu_available
from l2t_gs.render.sh import eval_sh, num_sh_bases

W, H = 64, 48
NEAR, FAR = 0.2, 3.0
BACKENDS = [
    "torch-pure",
    pytest.param("cpu-fast", marks=pytest.mark.skipif(not fast_cpu_available(), reason="no numba")),
]


def _scene(seed: int = 0, n: int = 200) -> dict[str, torch.Tensor]:
    """200 float64 splats around the origin, with a few behind the near plane and beyond the far one."""
    g = torch.Generator().manual_seed(seed)
    means = 0.15 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    means[:4, 2] = 0.95  # in front of camera 0 but closer than its near plane
    means[4:6, 2] = -2.5  # beyond camera 0's far plane
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64) * 2.0  # not normalised on purpose
    scales = 0.03 * torch.exp(0.6 * torch.randn(n, 3, generator=g, dtype=torch.float64))
    opacities = torch.rand(n, generator=g, dtype=torch.float64)
    opacities[::7] = 1.0  # alpha hits the 0.999 cap, transmittance runs out early
    opacities[::11] = 0.003  # below 1/255: never contributes
    sh = 0.4 * torch.randn(n, 16, 3, generator=g, dtype=torch.float64)
    rgb = torch.rand(n, 3, generator=g, dtype=torch.float64)
    viewmats = torch.stack(
        [
            look_at((0.0, 0.0, 1.0), (0.0, 0.0, 0.0), dtype=torch.float64),
            look_at((0.6, 0.25, 0.7), (0.02, -0.03, 0.0), dtype=torch.float64),
        ]
    )
    Ks = torch.tensor(
        [[[60.0, 0, 32.0], [0, 60.0, 24.0], [0, 0, 1]], [[75.0, 0, 29.5], [0, 72.0, 26.0], [0, 0, 1]]],
        dtype=torch.float64,
    )
    bgs = torch.tensor([[0.1, 0.5, 0.9], [1.0, 0.2, 0.3]], dtype=torch.float64)
    return dict(means=means, quats=quats, scales=scales, opacities=opacities, sh=sh, rgb=rgb,
                viewmats=viewmats, Ks=Ks, bgs=bgs)  # fmt: skip


def _rotmat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = (q / np.linalg.norm(q, axis=-1, keepdims=True)).T
    return np.stack(
        [
            np.stack([w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z], -1),
        ],
        axis=-2,
    )


def brute_force(
    s: dict[str, torch.Tensor],
    sh_degree: int | None,
    use_bg: bool,
    antialiased: bool = False,
    eps2d: float = 0.3,
    W: int = W,
    H: int = H,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Reference render of colour (3) + accumulated depth (1): ([C, H, W, 4], alpha [C, H, W], n stopped)."""
    means = s["means"].numpy()
    cov3 = (
        _rotmat(s["quats"].numpy())
        * s["scales"].numpy()[:, None, :] ** 2
        @ np.transpose(_rotmat(s["quats"].numpy()), (0, 2, 1))
    )
    px, py = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    out = np.zeros((2, H, W, 4))
    alphas = np.zeros((2, H, W))
    stopped = 0
    for c in range(2):
        vm = s["viewmats"][c].numpy()
        k = s["Ks"][c].numpy()
        rot, t = vm[:3, :3], vm[:3, 3]
        pc = means @ rot.T + t
        x, y, z = pc.T
        fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
        tanx, tany = 0.5 * W / fx, 0.5 * H / fy
        xz = np.clip(x / z, -(cx / fx + 0.3 * tanx), (W - cx) / fx + 0.3 * tanx)
        yz = np.clip(y / z, -(cy / fy + 0.3 * tany), (H - cy) / fy + 0.3 * tany)
        jac = np.zeros((len(z), 2, 3))
        jac[:, 0, 0], jac[:, 0, 2] = fx / z, -fx * xz / z
        jac[:, 1, 1], jac[:, 1, 2] = fy / z, -fy * yz / z
        cov2 = jac @ (rot @ cov3 @ rot.T) @ np.transpose(jac, (0, 2, 1))
        det0 = np.linalg.det(cov2)
        cov2 = cov2 + eps2d * np.eye(2)
        conic = np.linalg.inv(cov2)
        op = s["opacities"].numpy().copy()
        if antialiased:
            op = op * np.sqrt(np.clip(det0 / np.linalg.det(cov2), 0, None))
        mx, my = fx * x / z + cx, fy * y / z + cy
        if sh_degree is None:
            rgb = s["rgb"].numpy()
        else:
            campos = -rot.T @ t
            dirs = torch.from_numpy(means - campos)
            rgb = np.maximum(eval_sh(sh_degree, dirs, s["sh"][:, : num_sh_bases(sh_degree)]).numpy() + 0.5, 0)
        feat = np.concatenate([rgb, z[:, None]], axis=1)

        trans = np.ones((H, W))
        acc = np.zeros((H, W, 4))
        done = np.zeros((H, W), dtype=bool)
        for g in sorted(np.flatnonzero((z >= NEAR) & (z <= FAR)), key=lambda i: z[i]):
            dx, dy = mx[g] - px, my[g] - py
            sigma = 0.5 * (conic[g, 0, 0] * dx * dx + conic[g, 1, 1] * dy * dy) + conic[g, 0, 1] * dx * dy
            alpha = np.minimum(0.999, op[g] * np.exp(-sigma))
            active = ~done & (sigma >= 0) & (alpha >= 1.0 / 255.0)
            t_next = trans * (1 - alpha)
            stop = active & (t_next <= 1e-4)
            done |= stop
            hit = active & ~stop
            acc += np.where(hit, alpha * trans, 0)[..., None] * feat[g]
            trans = np.where(hit, t_next, trans)
        if use_bg:
            acc[..., :3] += trans[..., None] * s["bgs"][c].numpy()
        out[c], alphas[c] = acc, 1 - trans
        stopped += int(done.sum())
    return out, alphas, stopped


@functools.cache
def _reference(sh_degree: int | None, use_bg: bool, antialiased: bool) -> tuple[np.ndarray, np.ndarray, int]:
    return brute_force(_scene(), sh_degree, use_bg, antialiased)


def _render(s, backend, sh_degree, use_bg, mode, antialiased=False, packed=True):
    colors = s["rgb"] if sh_degree is None else s["sh"][:, : num_sh_bases(sh_degree)]
    return rasterize(
        s["means"], s["quats"], s["scales"], s["opacities"], colors, s["viewmats"], s["Ks"], W, H,
        near_plane=NEAR, far_plane=FAR, sh_degree=sh_degree, backgrounds=s["bgs"] if use_bg else None,
        render_mode=mode, backend=backend, rasterize_mode="antialiased" if antialiased else "classic",
        packed=packed,
    )  # fmt: skip


def test_reference_exercises_the_rules():
    ref, alphas, stopped = _reference(None, False, False)
    assert stopped > 20, "the scene should make some pixels run out of transmittance"
    assert (alphas > 0.01).mean() > 0.3
    assert np.isfinite(ref).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "sh_degree,use_bg,antialiased",
    [(None, False, False), (None, True, False), (0, True, False), (1, False, False), (2, True, False),
     (3, False, False), (3, True, True), (None, False, True)],
)  # fmt: skip
def test_render_matches_brute_force(backend, sh_degree, use_bg, antialiased):
    ref, ref_alpha, _ = _reference(sh_degree, use_bg, antialiased)
    s = _scene()
    with torch.no_grad():
        for mode in ("RGB", "D", "ED", "RGB+D", "RGB+ED"):
            img, alpha, meta = _render(s, backend, sh_degree, use_bg, mode, antialiased)
            assert meta["backend"] == backend
            assert img.dtype == torch.float64 and alpha.shape == (2, H, W, 1)
            np.testing.assert_allclose(alpha[..., 0].numpy(), ref_alpha, atol=1e-9, rtol=0)
            depth = ref[..., 3:]
            expected = {
                "RGB": ref[..., :3],
                "D": depth,
                "ED": depth / np.maximum(ref_alpha[..., None], 1e-10),
                "RGB+D": ref,
                "RGB+ED": np.concatenate([ref[..., :3], depth / np.maximum(ref_alpha[..., None], 1e-10)], -1),
            }[mode]
            np.testing.assert_allclose(img.numpy(), expected, atol=1e-8, rtol=1e-8, err_msg=mode)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tile_size", [4, 7, 16, 32])
def test_odd_image_and_tile_sizes(backend, tile_size):
    """Image sizes that are not tile multiples and any tile size give the reference image."""
    s = _scene(seed=3)
    ref, ref_alpha, _ = brute_force(s, None, True, W=61, H=37)
    with torch.no_grad():
        img, alpha, meta = rasterize(
            s["means"], s["quats"], s["scales"], s["opacities"], s["rgb"], s["viewmats"], s["Ks"], 61, 37,
            near_plane=NEAR, far_plane=FAR, backend=backend, tile_size=tile_size, backgrounds=s["bgs"],
        )  # fmt: skip
    assert meta["tile_width"] == -(-61 // tile_size)
    np.testing.assert_allclose(alpha[..., 0].numpy(), ref_alpha, atol=1e-9, rtol=0)
    np.testing.assert_allclose(img.numpy(), ref[..., :3], atol=1e-8, rtol=1e-8)


def test_fast_and_pure_paths_agree_in_float32():
    from l2t_gs.render import head_camera
    from l2t_gs.render.synthetic import head_scene

    if not fast_cpu_available():
        pytest.skip("no numba")
    sc = head_scene(4000, seed=1)
    vm, K = head_camera("three-quarter", sc.means, 128, 96, fill=0.7)
    args = (sc.means, sc.quats, sc.scales, sc.opacities, sc.sh, vm, K, 128, 96)
    with torch.no_grad():
        a, aa, _ = rasterize(*args, sh_degree=3, backend="torch-pure", render_mode="RGB+ED")
        b, ba, _ = rasterize(*args, sh_degree=3, backend="cpu-fast", render_mode="RGB+ED")
    assert a.dtype == b.dtype == torch.float32
    diff = (a - b).abs()
    assert float(diff[..., :3].max()) < 1e-3
    assert float((aa - ba).abs().max()) < 1e-3
    assert float(aa.mean()) > 0.2


def test_packed_and_dense_meta():
    s = _scene()
    out_p = _render(s, "torch-pure", None, False, "RGB", packed=True)
    out_d = _render(s, "torch-pure", None, False, "RGB", packed=False)
    torch.testing.assert_close(out_p[0], out_d[0])
    mp, md = out_p[2], out_d[2]
    assert md["radii"].shape == (2, 200, 2) and md["means2d"].shape == (2, 200, 2)
    assert md["conics"].shape == (2, 200, 3) and md["depths"].shape == (2, 200)
    nnz = int((md["radii"] > 0).all(-1).sum())
    assert mp["means2d"].shape == (nnz, 2) and mp["camera_ids"].shape == (nnz,)
    torch.testing.assert_close(mp["means2d"], md["means2d"][mp["camera_ids"], mp["gaussian_ids"]])
    # near/far culling: splats 0..3 are in front of camera 0's near plane, 4..5 beyond its far plane
    assert (md["radii"][0, :6] == 0).all()
    # gsplat's tile lists: offsets index flatten_ids, which point into the packed / dense layout
    for m, n_items in ((mp, nnz), (md, 2 * 200)):
        assert m["isect_offsets"].shape == (2, m["tile_height"], m["tile_width"])
        assert int(m["flatten_ids"].max()) < n_items
        assert int(m["tiles_per_gauss"].sum()) == m["flatten_ids"].numel()


@pytest.mark.skipif(not fast_cpu_available(), reason="no numba")
@pytest.mark.parametrize("antialiased", [False, True])
def test_fast_path_meta_matches_pure_path(antialiased):
    s = _scene()
    with torch.no_grad():
        metas = [_render(s, be, 2, True, "RGB", antialiased, packed=False)[2] for be in ("torch-pure", "cpu-fast")]
    pure, fast = metas
    torch.testing.assert_close(fast["radii"], pure["radii"])
    vis = (pure["radii"] > 0).all(-1)
    for key in ("means2d", "depths", "conics", "opacities"):
        torch.testing.assert_close(fast[key][vis], pure[key][vis], msg=key)
    packed = _render(s, "cpu-fast", None, False, "RGB", antialiased, packed=True)[2]
    assert packed["means2d"].shape == (int(vis.sum()), 2)
    torch.testing.assert_close(packed["conics"], pure["conics"][vis])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sh_degree", [None, 2])
def test_per_camera_colors(backend, sh_degree):
    """colors [C, N, D] / [C, N, K, 3] give camera c the colours of slice c."""
    s = _scene()
    base = s["rgb"] if sh_degree is None else s["sh"][:, :9]
    per_cam = torch.stack([base, base.flip(0)])
    args = (s["means"], s["quats"], s["scales"], s["opacities"])
    with torch.no_grad():
        both, _, _ = rasterize(*args, per_cam, s["viewmats"], s["Ks"], W, H, sh_degree=sh_degree, backend=backend)
        for c in range(2):
            one, _, _ = rasterize(*args, per_cam[c], s["viewmats"][c : c + 1], s["Ks"][c : c + 1], W, H,
                                  sh_degree=sh_degree, backend=backend)  # fmt: skip
            torch.testing.assert_close(both[c : c + 1], one)


def test_empty_and_fully_culled_scenes():
    s = _scene()
    bg = s["bgs"]
    for be in ("torch-pure", "cpu-fast") if fast_cpu_available() else ("torch-pure",):
        img, alpha, meta = rasterize(
            s["means"][:0], s["quats"][:0], s["scales"][:0], s["opacities"][:0], s["rgb"][:0],
            s["viewmats"], s["Ks"], W, H, backgrounds=bg, backend=be,
        )  # fmt: skip
        assert (alpha == 0).all() and torch.allclose(img, bg[:, None, None, :].expand_as(img))
        img, alpha, _ = rasterize(
            s["means"] + torch.tensor([0, 0, 50.0], dtype=torch.float64), s["quats"], s["scales"],
            s["opacities"], s["rgb"], s["viewmats"], s["Ks"], W, H, backend=be,
        )  # fmt: skip
        assert (alpha == 0).all() and (img == 0).all()


def test_backend_selection():
    s = _scene()
    args = (s["means"], s["quats"], s["scales"], s["opacities"], s["rgb"], s["viewmats"], s["Ks"], W, H)
    with torch.no_grad():
        _, _, meta = rasterize(*args, backend="auto")
    assert meta["backend"] == ("cpu-fast" if fast_cpu_available() else "torch-pure")
    means = s["means"].clone().requires_grad_(True)
    _, _, meta = rasterize(means, *args[1:], backend="torch")
    assert meta["backend"] == "torch-pure"
    if not torch.cuda.is_available():
        with pytest.raises(L2TError, match="gsplat"):
            rasterize(*args, backend="gsplat")
    with pytest.raises(L2TError, match="forward-only"):
        rasterize(means, *args[1:], backend="cpu-fast")


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda a: a.update(means=a["means"][:, :2]), r"means must be \[N, 3\]"),
        (lambda a: a.update(quats=a["quats"][:-1]), "quats must be"),
        (lambda a: a.update(opacities=a["opacities"][:, None]), "opacities must be"),
        (lambda a: a.update(Ks=a["Ks"][:1]), "Ks must be"),
        (lambda a: a.update(viewmats=a["viewmats"][:, :3]), "viewmats must be"),
        (lambda a: a["means"].__setitem__((3, 0), float("nan")), "means contains NaN"),
        (lambda a: a["scales"].__setitem__((5, 1), float("inf")), "scales contains NaN"),
        (lambda a: a["scales"].__setitem__((5, 1), -0.1), "non-negative"),
        (lambda a: a["opacities"].__setitem__(2, 1.5), r"opacities must lie in \[0, 1\]"),
        (lambda a: a["quats"].__setitem__(1, 0.0), "zero quaternion"),
        (lambda a: a.update(colors=a["sh"]), r"colors must be \[N, D\]"),
        (lambda a: a.update(sh_degree=2), "SH coefficients"),
        (lambda a: a.update(sh_degree=3, colors=a["sh"][:, :9]), "needs K >= 16"),
        (lambda a: a.update(sh_degree=4, colors=a["sh"]), "sh_degree must be"),
        (lambda a: a.update(backgrounds=torch.zeros(2, 4, dtype=torch.float64)), "backgrounds must be"),
        (lambda a: a.update(render_mode="RGBD"), "render_mode"),
        (lambda a: a.update(backend="cuda"), "backend must be"),
        (lambda a: a.update(width=0), "width must be"),
        (lambda a: a.update(near_plane=5.0, far_plane=1.0), "near_plane"),
        (lambda a: a.update(means=a["means"].int()), "floating-point"),
        (lambda a: a.update(absgrad=True), "only supported by the gsplat backend"),
        (lambda a: a.update(bogus=1), "unknown option 'bogus'"),
    ],
)
def test_invalid_inputs_raise_one_line_errors(change, match):
    s = _scene()
    a = dict(means=s["means"].clone(), quats=s["quats"].clone(), scales=s["scales"].clone(),
             opacities=s["opacities"].clone(), colors=s["rgb"].clone(), viewmats=s["viewmats"], Ks=s["Ks"],
             width=W, height=H, sh=s["sh"], backend="torch-pure")  # fmt: skip
    change(a)
    a.pop("sh")
    with pytest.raises(L2TError, match=match) as info:
        rasterize(**a)
    assert "\n" not in str(info.value) and str(info.value).startswith("rasterize: ")
