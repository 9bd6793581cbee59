"""Binding math: triangle frames, quaternions and local <-> world, against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from l2t_gs.core.rotation import quat_multiply, quat_to_matrix
from l2t_gs.gaussians.binding import frame_quats, local_to_world, triangle_frames, world_to_local

# ----------------------------------------------------------------------------- references (numpy)


def ref_quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of one quaternion (w, x, y, z), normalised first."""
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z],
        ]
    )


def ref_frame(v0: np.ndarray, v1: np.ndarray, v2: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """GaussianAvatars' triangle frame written out for one triangle."""
    a0 = (v1 - v0) / np.linalg.norm(v1 - v0)
    n = np.cross(a0, v2 - v0)
    a1 = n / np.linalg.norm(n)
    m = np.cross(a1, a0)
    a2 = -m / np.linalg.norm(m)
    rot = np.column_stack([a0, a1, a2])
    k = 0.5 * (np.linalg.norm(v1 - v0) + abs(float(a2 @ (v2 - v0))))
    return rot, k, (v0 + v1 + v2) / 3.0


def random_mesh(rng: np.random.Generator, batch: int, nv: int = 12, nf: int = 16) -> tuple[np.ndarray, np.ndarray]:
    verts = rng.normal(size=(batch, nv, 3))
    faces = np.stack([rng.choice(nv, size=3, replace=False) for _ in range(nf)])
    return verts, faces


def random_quats(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(size=(n, 4)) * rng.uniform(0.3, 3.0, size=(n, 1))  # not normalised on purpose


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    return ref_quat_to_matrix(rng.normal(size=4))


# ----------------------------------------------------------------------------- tests


def test_triangle_frames_match_per_triangle_reference() -> None:
    rng = np.random.default_rng(0)
    verts, faces = random_mesh(rng, batch=3)
    fr = triangle_frames(torch.from_numpy(verts), torch.from_numpy(faces))
    assert fr.rotations.shape == (3, len(faces), 3, 3)
    assert fr.scales.shape == (3, len(faces))
    assert fr.centroids.shape == (3, len(faces), 3)
    assert fr.quats.shape == (3, len(faces), 4)
    for b in range(3):
        for f, (i0, i1, i2) in enumerate(faces):
            rot, k, c = ref_frame(verts[b, i0], verts[b, i1], verts[b, i2])
            np.testing.assert_allclose(fr.rotations[b, f].numpy(), rot, atol=1e-12)
            assert fr.scales[b, f].item() == pytest.approx(k, rel=1e-12)
            np.testing.assert_allclose(fr.centroids[b, f].numpy(), c, atol=1e-12)
            np.testing.assert_allclose(ref_quat_to_matrix(fr.quats[b, f].numpy()), rot, atol=1e-12)
    # proper rotations, a0 along the first edge, a1 the right-handed normal
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(fr.rotations.transpose(-1, -2) @ fr.rotations, eye.expand_as(fr.rotations))
    torch.testing.assert_close(torch.linalg.det(fr.rotations), torch.ones(3, len(faces), dtype=torch.float64))


def test_local_to_world_matches_reference() -> None:
    rng = np.random.default_rng(1)
    verts, faces = random_mesh(rng, batch=2)
    n = 40
    binding = rng.integers(0, len(faces), size=n)
    mu = rng.normal(size=(n, 3))
    s = rng.normal(size=(n, 3))
    q = random_quats(rng, n)
    fr = triangle_frames(torch.from_numpy(verts), torch.from_numpy(faces))
    means, quats, log_scales = local_to_world(fr, *map(torch.from_numpy, (binding, mu, s, q)))
    assert means.shape == (2, n, 3) and quats.shape == (2, n, 4) and log_scales.shape == (2, n, 3)
    torch.testing.assert_close(quats.norm(dim=-1), torch.ones(2, n, dtype=torch.float64))
    for b in range(2):
        for i in range(n):
            rot, k, c = ref_frame(*verts[b, faces[binding[i]]])
            np.testing.assert_allclose(means[b, i].numpy(), k * rot @ mu[i] + c, atol=1e-12)
            np.testing.assert_allclose(np.exp(log_scales[b, i].numpy()), np.exp(s[i]) * k, rtol=1e-12)
            np.testing.assert_allclose(
                ref_quat_to_matrix(quats[b, i].numpy()), rot @ ref_quat_to_matrix(q[i]), atol=1e-12
            )


def test_rigid_similarity_moves_splats_rigidly() -> None:
    """Rotating, scaling and translating the mesh applies the same transform to every splat."""
    rng = np.random.default_rng(2)
    verts, faces = random_mesh(rng, batch=1)
    rot = random_rotation(rng)
    sigma, t = 2.5, np.array([0.3, -1.0, 4.0])
    moved = sigma * verts @ rot.T + t
    both = torch.from_numpy(np.concatenate([verts, moved]))
    n = 25
    binding = torch.from_numpy(rng.integers(0, len(faces), size=n))
    mu, s, q = (torch.from_numpy(a) for a in (rng.normal(size=(n, 3)), rng.normal(size=(n, 3)), random_quats(rng, n)))
    means, quats, log_scales = local_to_world(triangle_frames(both, torch.from_numpy(faces)), binding, mu, s, q)
    np.testing.assert_allclose(means[1].numpy(), sigma * means[0].numpy() @ rot.T + t, atol=1e-10)
    np.testing.assert_allclose(log_scales[1].numpy(), log_scales[0].numpy() + math.log(sigma), atol=1e-10)
    m0 = quat_to_matrix(quats[0]).numpy()
    m1 = quat_to_matrix(quats[1]).numpy()
    np.testing.assert_allclose(m1, rot @ m0, atol=1e-10)


def test_translated_triangle_keeps_local_offsets() -> None:
    """A single triangle: the local frame is known in closed form."""
    verts = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])
    fr = triangle_frames(verts, faces)
    # a0 = +x, a1 = x cross y = +z, a2 = a0 x a1 = -y; k = (2 + 1) / 2
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(fr.rotations[0, 0], expected)
    assert fr.scales[0, 0].item() == pytest.approx(1.5)
    torch.testing.assert_close(fr.centroids[0, 0], torch.tensor([2 / 3, 1 / 3, 0.0], dtype=torch.float64))
    mu = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    means, _, _ = local_to_world(fr, torch.tensor([0, 0]), mu, torch.zeros(2, 3), torch.tensor([[1.0, 0, 0, 0]] * 2))
    c = fr.centroids[0, 0]
    torch.testing.assert_close(means[0, 0], c + torch.tensor([1.5, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(means[0, 1], c + torch.tensor([0.0, 0.0, 1.5], dtype=torch.float64))


def test_matrix_to_quaternion_all_branches() -> None:
    rng = np.random.default_rng(3)
    mats = [random_rotation(rng) for _ in range(200)]
    # half-turns about coordinate and diagonal axes exercise the x/y/z branches
    for axis in np.eye(3).tolist() + [[1, 1, 0], [0, 1, 1], [1, 1, 1], [1, -2, 0.5]]:
        a = np.asarray(axis, dtype=np.float64)
        a /= np.linalg.norm(a)
        mats.append(2 * np.outer(a, a) - np.eye(3))
        mats.append(ref_quat_to_matrix(np.array([1e-9, *a])))  # 180 degrees minus a hair
    mats.append(np.eye(3))
    m = torch.from_numpy(np.stack(mats))
    q = frame_quats(m)
    assert bool((q[:, 0] >= 0).all())
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(len(mats), dtype=torch.float64))
    for qi, mi in zip(q.numpy(), mats, strict=True):
        np.testing.assert_allclose(ref_quat_to_matrix(qi), mi, atol=1e-12)
    torch.testing.assert_close(quat_to_matrix(q), m)
    # float32 stays accurate
    q32 = frame_quats(m.float())
    torch.testing.assert_close(quat_to_matrix(q32), m.float(), atol=2e-6, rtol=0)


def test_quaternion_multiply_composes_rotations() -> None:
    rng = np.random.default_rng(4)
    a, b = random_quats(rng, 50), random_quats(rng, 50)
    a_unit = a / np.linalg.norm(a, axis=1, keepdims=True)
    b_unit = b / np.linalg.norm(b, axis=1, keepdims=True)
    ab = quat_multiply(torch.from_numpy(a_unit), torch.from_numpy(b_unit)).numpy()
    for i in range(50):
        np.testing.assert_allclose(
            ref_quat_to_matrix(ab[i]), ref_quat_to_matrix(a[i]) @ ref_quat_to_matrix(b[i]), atol=1e-12
        )


def test_world_to_local_inverts_local_to_world() -> None:
    rng = np.random.default_rng(5)
    verts, faces = random_mesh(rng, batch=1)
    n = 30
    binding = torch.from_numpy(rng.integers(0, len(faces), size=n))
    mu, s = torch.from_numpy(rng.normal(size=(n, 3))), torch.from_numpy(rng.normal(size=(n, 3)))
    q = torch.from_numpy(random_quats(rng, n))
    fr = triangle_frames(torch.from_numpy(verts), torch.from_numpy(faces))
    wm, wq, ws = local_to_world(fr, binding, mu, s, q)
    lm, lq, ls = world_to_local(fr, binding, wm[0], ws[0], wq[0])
    torch.testing.assert_close(lm, mu)
    torch.testing.assert_close(ls, s)
    torch.testing.assert_close(quat_to_matrix(lq), quat_to_matrix(q))


def test_degenerate_triangles_stay_finite() -> None:
    verts = torch.tensor(
        [[[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [0.0, 0, 0]]], dtype=torch.float32
    )  # collinear and repeated corners
    faces = torch.tensor([[0, 1, 2], [0, 3, 1], [0, 0, 0]])
    fr = triangle_frames(verts, faces)
    means, quats, log_scales = local_to_world(
        fr, torch.tensor([0, 1, 2]), torch.ones(3, 3), torch.zeros(3, 3), torch.tensor([[1.0, 0, 0, 0]] * 3)
    )
    for t in (fr.rotations, fr.quats, fr.scales, fr.centroids, means, quats, log_scales):
        assert bool(torch.isfinite(t).all())
    torch.testing.assert_close(frame_quats(torch.zeros(3, 3)), torch.tensor([1.0, 0, 0, 0]))


def test_gradients_flow_to_vertices_and_splats() -> None:
    rng = np.random.default_rng(6)
    verts, faces = random_mesh(rng, batch=2)
    v = torch.from_numpy(verts).requires_grad_(True)
    mu = torch.from_numpy(rng.normal(size=(8, 3))).requires_grad_(True)
    q = torch.from_numpy(random_quats(rng, 8)).requires_grad_(True)
    fr = triangle_frames(v, torch.from_numpy(faces))
    means, quats, log_scales = local_to_world(
        fr, torch.from_numpy(rng.integers(0, len(faces), 8)), mu, torch.zeros(8, 3, dtype=torch.float64), q
    )
    (means.sum() + quats.sum() + log_scales.sum()).backward()
    for t in (v, mu, q):
        assert t.grad is not None and bool(torch.isfinite(t.grad).all())
