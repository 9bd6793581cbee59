"""The procedural default avatar: builder, ``l2t-gs avatar build`` and the shipped ``avatars/default``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from l2t_gs.authoring.avatar import DEFAULT_NUM_SPLATS, build_default_avatar
from l2t_gs.catalog import list_avatars
from l2t_gs.cli.main import main
from l2t_gs.errors import L2TError
from l2t_gs.gaussians.avatar_io import load_avatar, resolve_avatar_dir
from l2t_gs.render import head_camera, rasterize
from l2t_gs.render.sh import sh_to_color, sh_to_rgb
from l2t_gs.rig import load_head_model

SMALL = 17_000  # a little above the built-in head's 15692 triangles: fast to build


@pytest.fixture(scope="module")
def head():
    return load_head_model("builtin")


@pytest.fixture(scope="module")
def shipped():
    return load_avatar("default")


@pytest.fixture(scope="module")
def small(head):
    return build_default_avatar(head, num_splats=SMALL, seed=3)


def _face_mask(avatar, names: tuple[str, ...]) -> torch.Tensor:
    """Per splat: all three corners of its triangle are in one of the region masks."""
    inside = torch.zeros(avatar.n_verts, dtype=torch.bool)
    for name in names:
        inside[avatar.head_model.masks[name]] = True
    return inside[avatar.faces].all(1)[avatar.binding]


def _colors(avatar) -> torch.Tensor:
    """Base (DC) colour of every splat, [N, 3]."""
    return sh_to_rgb(avatar.sh[:, 0]).clamp(0, 1)


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    return rgb @ torch.tensor([0.299, 0.587, 0.114])


def test_build_is_deterministic_per_seed(head, small):
    again = build_default_avatar(head, num_splats=SMALL, seed=3)
    for key in ("means", "log_scales", "quats", "opacity_logits", "sh", "binding"):
        assert torch.equal(getattr(small, key), getattr(again, key)), key
    other = build_default_avatar(head, num_splats=SMALL, seed=4)
    assert not torch.equal(small.means, other.means)
    assert not torch.equal(small.sh, other.sh)


def test_every_triangle_has_a_splat_and_counts_follow_the_request(head, small):
    assert small.num_splats == SMALL
    assert int(torch.bincount(small.binding, minlength=small.num_faces).min()) >= 1
    by_area = build_default_avatar(head, splats_per_area=1.0, seed=0, sh_degree=0)
    assert int(torch.bincount(by_area.binding, minlength=by_area.num_faces).min()) >= 1
    assert by_area.sh_degree == 0


def test_invalid_requests_raise_one_line_errors(head):
    with pytest.raises(L2TError, match="at least the number of triangles"):
        build_default_avatar(head, num_splats=100)
    with pytest.raises(L2TError, match="either"):
        build_default_avatar(head, num_splats=20_000, splats_per_area=5.0)
    with pytest.raises(L2TError, match="sh_degree"):
        build_default_avatar(head, sh_degree=4)
    with pytest.raises(L2TError, match="seed"):
        build_default_avatar(head, seed=-1)


def test_splats_are_flat_and_lie_on_their_triangles(small):
    verts = small.neutral_vertices()
    scales = small.deform(verts).scales[0]
    assert bool((scales[:, 1] < 0.5 * scales[:, [0, 2]].min(1).values).all())  # thin along the normal
    assert float(small.means[:, 1].abs().max()) < 1e-5  # in the triangle's plane
    tri = verts[small.faces[small.binding]]
    longest = (tri - tri.roll(1, dims=1)).norm(dim=-1).max(1).values
    assert bool((scales.max(1).values < 1.5 * longest).all())  # sized by their triangle


def test_region_colours(shipped):
    rgb = _colors(shipped)
    skin = _face_mask(shipped, ("face",)) & ~_face_mask(shipped, ("lips", "nose", "upper_face", "eyes"))
    skin &= ~_face_mask(shipped, ("mouth_interior", "teeth_upper", "teeth_lower", "eyelid_rims"))
    skin_rgb = rgb[skin].mean(0)
    skin_luma = float(_luma(skin_rgb))
    redness = lambda c: float(c[0] - 0.5 * (c[1] + c[2]))  # noqa: E731
    assert 0.45 < skin_luma < 0.9 and skin_rgb[0] > skin_rgb[1] > skin_rgb[2]  # warm skin

    lips = _face_mask(shipped, ("lips",)) & ~_face_mask(shipped, ("mouth_interior",))
    assert redness(rgb[lips].mean(0)) > redness(skin_rgb) + 0.05
    interior = _face_mask(shipped, ("mouth_interior",))
    assert float(_luma(rgb[interior]).mean()) < 0.5 * skin_luma
    teeth = _face_mask(shipped, ("teeth_upper", "teeth_lower"))
    assert float(_luma(rgb[teeth]).median()) > skin_luma
    scalp_top = _face_mask(shipped, ("scalp",)) & (shipped.deform(shipped.neutral_vertices()).means[0, :, 1] > 0.09)
    assert float(_luma(rgb[scalp_top]).mean()) < 0.5 * skin_luma  # hair

    # eyes: iris (near the gaze axis) darker than the sclera, darkest at the pupil
    means = shipped.deform(shipped.neutral_vertices()).means[0]
    joints = shipped.head_model.J_regressor @ shipped.neutral_vertices()
    eyes = _face_mask(shipped, ("eyes",))
    centre = joints[3:5][torch.argmin(torch.cdist(means[eyes], joints[3:5]), dim=1)]
    direction = torch.nn.functional.normalize(means[eyes] - centre, dim=-1)
    angle = torch.arccos(direction[:, 2].clamp(-1, 1))
    luma = _luma(rgb[eyes])
    pupil, iris = luma[angle < 0.1], luma[(angle > 0.25) & (angle < 0.4)]
    sclera = luma[(angle > 0.65) & (angle < 1.0)]
    assert len(pupil) and len(iris) and len(sclera)
    assert float(pupil.mean()) < float(iris.mean()) < float(sclera.mean()) - 0.2


def test_shipped_default_avatar_loads_by_name(head, shipped):
    assert "default" in list_avatars()
    folder = resolve_avatar_dir("default")
    meta = json.loads((folder / "avatar.json").read_text())
    assert meta["head_model"] == "builtin" and meta["name"] == "default"
    assert shipped.head_model_spec == "builtin"
    assert shipped.n_verts == head.n_verts and torch.equal(shipped.faces, head.faces.long())
    assert shipped.num_splats == DEFAULT_NUM_SPLATS
    assert int(torch.bincount(shipped.binding, minlength=shipped.num_faces).min()) >= 1
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    assert size < 6_000_000, f"avatars/default is {size / 1e6:.1f} MB"


def test_shipped_default_avatar_is_what_the_builder_makes(head, shipped):
    """avatars/default is regenerated with `l2t-gs avatar build --out avatars/default` after builder changes."""
    fresh = build_default_avatar(head)
    assert torch.equal(fresh.binding, shipped.binding)
    for key in ("means", "log_scales", "quats", "opacity_logits", "sh"):
        torch.testing.assert_close(getattr(fresh, key), getattr(shipped, key), atol=1e-4, rtol=1e-4)


def _render(avatar, verts: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    viewmats, ks = head_camera("front", avatar.neutral_vertices(), size, size)
    rgb, alpha, _ = rasterize(
        **avatar.splat_params(verts), viewmats=viewmats, Ks=ks, width=size, height=size, backend="torch"
    )
    return rgb[0], alpha[0, ..., 0], viewmats[0], ks[0]


def test_front_render_covers_the_face_and_the_open_mouth_is_dark(shipped):
    size = 128
    closed = shipped.neutral_vertices()
    opened = shipped.vertices_from_params({"jaw_pose": torch.tensor([0.3, 0.0, 0.0])})[0]
    rgb_c, alpha_c, viewmat, k = _render(shipped, closed, size)
    rgb_o, _, _, _ = _render(shipped, opened, size)
    c = size // 2
    assert float(alpha_c[c - 8 : c + 8, c - 8 : c + 8].min()) > 0.95  # the centre of the image is covered
    assert float(alpha_c.mean()) > 0.2
    # the mouth opening: between the upper and the lower lip of the open pose, projected into the image
    masks = shipped.head_model.masks
    mouth = 0.5 * (opened[masks["lip_upper"]].mean(0) + opened[masks["lip_lower"]].mean(0))
    cam = viewmat[:3, :3] @ mouth + viewmat[:3, 3]
    u, v = (k @ (cam / cam[2]))[:2].round().long().tolist()
    window = (slice(v - 1, v + 2), slice(u - 2, u + 3))
    luma_c, luma_o = float(_luma(rgb_c[window]).mean()), float(_luma(rgb_o[window]).mean())
    assert luma_o < 0.5 * luma_c, (luma_o, luma_c)
    assert luma_o < 0.25


def test_cli_build_writes_a_loadable_folder_and_preview(tmp_path: Path, capsys):
    out = tmp_path / "mine"
    preview = tmp_path / "preview.png"
    argv = ["avatar", "build", "--out", str(out), "--splats", str(SMALL), "--seed", "2", "--sh-degree", "0"]
    assert main([*argv, "--preview", str(preview), "--preview-size", "64"]) == 0
    assert "wrote" in capsys.readouterr().out
    avatar = load_avatar(out)
    assert avatar.name == "mine" and avatar.num_splats == SMALL and avatar.sh_degree == 0
    assert avatar.head_model_spec == "builtin"
    from PIL import Image

    with Image.open(preview) as im:
        assert im.size == (64 * 4, 64)
    assert main(["avatar", "build", "--out", str(tmp_path / "x"), "--splats", "10"]) == 1
    assert "at least the number of triangles" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_view_dependent_term_is_faint(small):
    """SH degree 1 holds only a facing-ratio term: any view changes a colour by at most 10 %."""
    dirs = torch.nn.functional.normalize(
        torch.randn(small.num_splats, 3, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    seen = sh_to_color(1, dirs, small.sh)
    base = sh_to_rgb(small.sh[:, 0])
    assert bool(((seen - base).abs() <= 0.11 * base + 1e-5).all())
