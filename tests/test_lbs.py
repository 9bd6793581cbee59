"""FLAME rig, LBS core and rotation helpers against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flame_factory import expm, make_flame_arrays, make_head_model, reference_flame

from l2t_gs.errors import L2TError
from l2t_gs.rig import (
    FlameRig,
    axis_angle_to_matrix,
    axis_angle_to_quat,
    batch_rigid_transform,
    blend_shapes,
    head_model_from_arrays,
    lbs,
    matrix_to_axis_angle,
    matrix_to_quat,
    quat_conjugate,
    quat_multiply,
    quat_normalize,
    quat_rotate,
    quat_to_axis_angle,
    quat_to_matrix,
    skew,
    vertices2joints,
)

F64 = torch.float64


def _random_params(rng: np.random.Generator, b: int, n_verts: int, n_shape: int, n_expr: int) -> dict:
    return {
        "shape": rng.normal(size=(n_shape,)),  # shared by the batch
        "expr": rng.normal(size=(b, n_expr)),
        "rotation": rng.normal(scale=0.4, size=(b, 3)),
        "neck_pose": rng.normal(scale=0.4, size=(b, 3)),
        "jaw_pose": rng.normal(scale=0.4, size=(b, 3)),
        "eyes_pose": rng.normal(scale=0.4, size=(b, 6)),
        "translation": rng.normal(scale=0.2, size=(b, 3)),
        "static_offset": rng.normal(scale=0.005, size=(n_verts, 3)),
        "dynamic_offset": rng.normal(scale=0.005, size=(b, n_verts, 3)),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_flame_rig_matches_brute_force(dtype: torch.dtype) -> None:
    arrays = make_flame_arrays(n_verts=50, n_shape=6, n_expr=4, seed=1)
    rig = FlameRig(head_model_from_arrays(arrays, dtype=dtype))
    rng = np.random.default_rng(7)
    b = 3
    p = _random_params(rng, b, 50, 6, 4)
    verts, joints = rig(**{k: torch.tensor(v, dtype=dtype) for k, v in p.items()}, return_joints=True)
    assert verts.shape == (b, 50, 3) and joints.shape == (b, 5, 3)
    assert verts.dtype == dtype
    tol = 1e-12 if dtype == F64 else 2e-6
    for i in range(b):
        pose = np.concatenate([p["rotation"][i], p["neck_pose"][i], p["jaw_pose"][i], p["eyes_pose"][i]])
        ref_v, ref_j = reference_flame(
            arrays,
            p["shape"],
            p["expr"][i],
            pose.reshape(5, 3),
            p["translation"][i],
            offset=p["static_offset"] + p["dynamic_offset"][i],
        )
        np.testing.assert_allclose(verts[i].double().numpy(), ref_v, rtol=0, atol=tol)
        np.testing.assert_allclose(joints[i].double().numpy(), ref_j, rtol=0, atol=tol)


def test_functional_lbs_matches_brute_force_large_angles() -> None:
    arrays = make_flame_arrays(n_verts=30, seed=3)
    model = head_model_from_arrays(arrays, dtype=F64)
    rng = np.random.default_rng(11)
    pose = rng.normal(scale=1.5, size=(2, 5, 3))  # angles well past pi/2
    v_shaped = model.v_template[None].expand(2, -1, -1)
    verts, joints, transforms = lbs(
        torch.tensor(pose), v_shaped, model.posedirs, model.J_regressor, model.parents, model.lbs_weights
    )
    assert transforms.shape == (2, 5, 4, 4)
    for i in range(2):
        ref_v, ref_j = reference_flame(arrays, np.zeros(0), np.zeros(0), pose[i], np.zeros(3))
        np.testing.assert_allclose(verts[i].numpy(), ref_v, rtol=0, atol=1e-12)
        np.testing.assert_allclose(joints[i].numpy(), ref_j, rtol=0, atol=1e-12)


def test_zero_parameters_give_template_exactly() -> None:
    for dtype in (torch.float32, F64):
        model = make_head_model(dtype=dtype, exact_weights=True, seed=2)
        rig = FlameRig(model)
        out = rig()
        assert out.shape == (1, model.n_verts, 3)
        assert torch.equal(out[0], model.v_template)
        zeros = rig(
            shape=torch.zeros(4, model.n_shape, dtype=dtype),
            expr=torch.zeros(4, model.n_expr, dtype=dtype),
            rotation=torch.zeros(4, 3, dtype=dtype),
            eyes_pose=torch.zeros(4, 6, dtype=dtype),
            translation=torch.zeros(4, 3, dtype=dtype),
        )
        assert zeros.shape == (4, model.n_verts, 3)
        assert torch.equal(zeros, model.v_template.expand(4, -1, -1))
    # Generic (non-dyadic) weights: equal up to the rounding of the weight sums.
    model = make_head_model(dtype=F64, seed=4)
    torch.testing.assert_close(FlameRig(model)()[0], model.v_template, rtol=0, atol=1e-15)


def test_gradcheck_all_inputs_float64(one_thread: None) -> None:
    model = make_head_model(dtype=F64, n_verts=8, n_shape=2, n_expr=2, n_faces=4, seed=5)
    rig = FlameRig(model)
    gen = torch.Generator().manual_seed(0)

    def r(*shape: int, scale: float = 0.3) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen, dtype=F64) * scale).requires_grad_()

    b = 2
    inputs = (r(b, 2), r(b, 2), r(b, 3), r(b, 3), r(b, 3), r(b, 6), r(b, 3), r(8, 3, scale=0.01), r(b, 8, 3))

    def fn(*args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return rig(*args, return_joints=True)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7)
    # At exactly zero pose (the series branch of Rodrigues).
    zero_pose = tuple(torch.zeros_like(x).requires_grad_() for x in inputs)
    assert torch.autograd.gradcheck(fn, zero_pose, eps=1e-6, atol=1e-7)


def test_global_rotation_is_rigid_about_root_joint() -> None:
    model = make_head_model(dtype=F64, seed=6)
    rig = FlameRig(model)
    rot = torch.tensor([[0.3, -0.7, 0.2]], dtype=F64)
    out = rig(rotation=rot)[0]
    j0 = rig.joints_rest()[0, 0]
    expected = (model.v_template - j0) @ axis_angle_to_matrix(rot[0]).T + j0
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-14)


def test_jaw_pose_leaves_unweighted_vertices_alone() -> None:
    arrays = make_flame_arrays(n_verts=40, seed=8)
    # Vertices 0..9 hang on the neck only and have no pose correctives: a jaw rotation must not
    # move them, while jaw-weighted vertices do move.
    arrays["weights"][:10] = 0.0
    arrays["weights"][:10, 1] = 1.0
    arrays["posedirs"][:10] = 0.0
    arrays["weights"][10:20] = 0.0
    arrays["weights"][10:20, 2] = 1.0
    rig = FlameRig(head_model_from_arrays(arrays, dtype=F64))
    rest = rig()
    opened = rig(jaw_pose=torch.tensor([[0.3, 0.0, 0.0]], dtype=F64))
    torch.testing.assert_close(opened[0, :10], rest[0, :10], rtol=0, atol=1e-15)
    assert (opened[0, 10:20] - rest[0, 10:20]).norm(dim=-1).min() > 1e-4


def test_batch_inference_padding_and_sharing() -> None:
    model = make_head_model(dtype=F64, n_shape=6, n_expr=4, seed=9)
    rig = FlameRig(model)
    shape = torch.randn(3, dtype=F64)
    padded = torch.cat([shape, torch.zeros(3, dtype=F64)])
    expr = torch.randn(5, 2, dtype=F64)
    a = rig(shape=shape, expr=expr)
    b = rig(shape=padded.expand(5, -1), expr=torch.cat([expr, torch.zeros(5, 2, dtype=F64)], dim=1))
    assert a.shape == (5, model.n_verts, 3)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-15)
    # Unbatched pose vectors broadcast; batch comes from the offsets here.
    c = rig(jaw_pose=torch.tensor([0.1, 0.0, 0.0], dtype=F64), dynamic_offset=torch.zeros(2, model.n_verts, 3))
    assert c.shape == (2, model.n_verts, 3)
    torch.testing.assert_close(c[0], c[1])
    # Translation is added exactly after skinning.
    t = torch.tensor([[1.0, -2.0, 0.5]], dtype=F64)
    torch.testing.assert_close(rig(translation=t), rig() + t[:, None], rtol=0, atol=0)


def test_bad_parameter_shapes_raise_clear_errors() -> None:
    model = make_head_model(dtype=F64, n_shape=6, n_expr=4, seed=9)
    rig = FlameRig(model)
    with pytest.raises(L2TError, match="expr has 7 coefficients"):
        rig(expr=torch.zeros(1, 7))
    with pytest.raises(L2TError, match="batch size"):
        rig(expr=torch.zeros(2, 4), jaw_pose=torch.zeros(3, 3))
    with pytest.raises(L2TError, match="eyes_pose"):
        rig(eyes_pose=torch.zeros(2, 3))
    with pytest.raises(L2TError, match="static_offset"):
        rig(static_offset=torch.zeros(model.n_verts + 1, 3))


def test_joints_rest_and_zero_pose_joints() -> None:
    model = make_head_model(dtype=F64, seed=10)
    rig = FlameRig(model)
    shape = torch.randn(2, model.n_shape, dtype=F64)
    rest = rig.joints_rest(shape=shape)
    v_shaped = model.v_template + blend_shapes(shape, model.shapedirs)
    torch.testing.assert_close(rest, vertices2joints(model.J_regressor, v_shaped))
    _, posed = rig(shape=shape, return_joints=True)
    torch.testing.assert_close(posed, rest, rtol=0, atol=1e-15)


def test_batch_rigid_transform_identity_is_exact() -> None:
    joints = torch.randn(3, 5, 3, dtype=torch.float32)
    rots = torch.eye(3).expand(3, 5, 3, 3)
    posed, transforms = batch_rigid_transform(rots, joints, [-1, 0, 1, 1, 1])
    assert torch.equal(transforms, torch.eye(4).expand(3, 5, 4, 4))
    assert torch.equal(posed, joints)


def test_float_dtypes_and_module_conversion_agree() -> None:
    model = make_head_model(dtype=torch.float32, seed=12)
    rig = FlameRig(model)
    jaw = torch.tensor([[0.2, 0.05, -0.1]])
    out32 = rig(jaw_pose=jaw, expr=torch.ones(1, model.n_expr))
    rig64 = FlameRig(model).double()
    out64 = rig64(jaw_pose=jaw, expr=torch.ones(1, model.n_expr))  # inputs are cast to the rig dtype
    assert out64.dtype == F64
    torch.testing.assert_close(out32.double(), out64, rtol=0, atol=1e-6)
    assert rig.state_dict() == {}  # model arrays are non-persistent buffers


def test_rig_requires_five_joints() -> None:
    arrays = make_flame_arrays(seed=13)
    arrays["kintree_table"] = arrays["kintree_table"][:, :4]
    arrays["J_regressor"] = arrays["J_regressor"][:4]
    arrays["weights"] = arrays["weights"][:, :4]
    arrays["posedirs"] = arrays["posedirs"][..., :27]
    model = head_model_from_arrays(arrays)
    with pytest.raises(L2TError, match="5"):
        FlameRig(model)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    model = make_head_model(dtype=torch.float32, seed=14)
    cpu = FlameRig(model)
    gpu = FlameRig(model).cuda()
    p = {"jaw_pose": torch.tensor([[0.3, 0.0, 0.1]]), "expr": torch.randn(4, model.n_expr)}
    out = gpu(**{k: v.cuda() for k, v in p.items()})
    assert out.is_cuda
    torch.testing.assert_close(out.cpu(), cpu(**p), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- rotations
def test_rodrigues_matches_matrix_exponential_and_is_batched() -> None:
    rng = np.random.default_rng(0)
    aa = np.concatenate([rng.normal(scale=2.0, size=(40, 3)), rng.normal(scale=1e-3, size=(10, 3))])
    rot = axis_angle_to_matrix(torch.tensor(aa))
    for i in range(len(aa)):
        np.testing.assert_allclose(rot[i].numpy(), expm(_skew_np(aa[i])), rtol=0, atol=1e-13)
    batched = axis_angle_to_matrix(torch.tensor(aa).reshape(2, 5, 5, 3))
    torch.testing.assert_close(batched.reshape(50, 3, 3), rot)
    assert torch.equal(axis_angle_to_matrix(torch.zeros(3)), torch.eye(3))


def _skew_np(r: np.ndarray) -> np.ndarray:
    return skew(torch.tensor(r)).numpy()


def test_rotation_conversions_round_trip() -> None:
    gen = torch.Generator().manual_seed(1)
    aa = torch.randn(4, 25, 3, generator=gen, dtype=F64)
    aa = aa / aa.norm(dim=-1, keepdim=True) * torch.rand(4, 25, 1, generator=gen, dtype=F64) * 3.1
    aa[0, 0] = 0.0
    aa[0, 1] = torch.tensor([1e-9, 0.0, 0.0])
    rot = axis_angle_to_matrix(aa)
    torch.testing.assert_close(matrix_to_axis_angle(rot), aa, rtol=0, atol=1e-10)
    q = axis_angle_to_quat(aa)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(4, 25, dtype=F64))
    torch.testing.assert_close(quat_to_matrix(q), rot, rtol=0, atol=1e-13)
    torch.testing.assert_close(matrix_to_quat(rot), q, rtol=0, atol=1e-12)  # w >= 0 for angles < pi
    torch.testing.assert_close(quat_to_axis_angle(q), aa, rtol=0, atol=1e-12)
    torch.testing.assert_close(quat_to_axis_angle(-3.0 * q), aa, rtol=0, atol=1e-12)  # sign/scale-free
    # Angle exactly pi (w = 0) and near-pi matrices still convert.
    pi_rot = axis_angle_to_matrix(torch.tensor([0.0, torch.pi, 0.0], dtype=F64))
    torch.testing.assert_close(axis_angle_to_matrix(matrix_to_axis_angle(pi_rot)), pi_rot, rtol=0, atol=1e-12)


def test_quaternion_algebra() -> None:
    gen = torch.Generator().manual_seed(2)
    a = quat_normalize(torch.randn(3, 7, 4, generator=gen, dtype=F64))
    b = quat_normalize(torch.randn(7, 4, generator=gen, dtype=F64))  # broadcasts
    ab = quat_multiply(a, b)
    torch.testing.assert_close(quat_to_matrix(ab), quat_to_matrix(a) @ quat_to_matrix(b))
    ident = quat_multiply(a, quat_conjugate(a))
    torch.testing.assert_close(ident, torch.tensor([1.0, 0, 0, 0], dtype=F64).expand_as(ident))
    v = torch.randn(3, 7, 3, generator=gen, dtype=F64)
    torch.testing.assert_close(quat_rotate(a, v), (quat_to_matrix(a) @ v[..., None])[..., 0])
    torch.testing.assert_close(quat_to_matrix(2.5 * a), quat_to_matrix(a))  # non-unit input


def test_rotation_gradients_are_finite_and_correct_at_zero(one_thread: None) -> None:
    for scale in (0.0, 1e-4, 0.05, 1.0):
        x = (torch.randn(4, 3, dtype=F64) * scale).requires_grad_()
        assert torch.autograd.gradcheck(axis_angle_to_matrix, (x,))
        assert torch.autograd.gradcheck(axis_angle_to_quat, (x,))
        assert torch.autograd.gradcheck(lambda a: matrix_to_axis_angle(axis_angle_to_matrix(a)), (x,))
    # dR/dr at zero is the skew basis.
    x = torch.zeros(3, dtype=torch.float32, requires_grad=True)
    axis_angle_to_matrix(x)[2, 1].backward()
    assert torch.equal(x.grad, torch.tensor([1.0, 0.0, 0.0]))
