"""The project's built-in FLAME-format head, generated procedurally.

``build_builtin_head()`` returns the arrays of a FLAME-format model (``v_template``, ``shapedirs``
with identity then expression components, ``posedirs``, ``J_regressor``, ``weights``,
``kintree_table``, ``f``) plus the project's extensions (``n_shape``, ``shape_names``,
``expr_names``, ``mask_<region>``). ``l2t-gs head build --out FILE.npz`` writes it; the package ships
the result as ``l2t_gs/assets/head/l2t_head.npz``.

Construction (units: metres; FLAME axes: +y up, the face looks toward +z, +x is the subject's left):

* **Skin**: a latitude/longitude grid cast as rays from a point inside the head onto the zero set of
  a smooth implicit head (a smooth union of ellipsoids: cranium, forehead, mid-face, jaw, cheeks,
  brow ridge, nose, lips, chin, neck; eye sockets carved out and eyeballs blended back in so the lids
  hug the eyes). Rows and columns are denser around the eyes and the mouth, and two rows follow
  the constant heights of the eye line and the mouth line exactly.
* **Openings**: the mouth line and each eye line are cut into slits (their vertices are doubled
  between the corners); the slits are opened in parameter space, which gives lips with a real gap
  between them and almond-shaped eyelids. The mouth slit continues into a closed mouth cavity
  (inner lip surface, gums, throat), the eye slits into a short inner rim behind the lids.
* **Parts**: eyeballs (spheres, pole on the gaze axis), upper and lower teeth (curved bars along the
  dental arch), and simple ears (tilted flattened shells).
* **Rig**: joints root (neck base), neck (head on neck), jaw (temporo-mandibular axis), left eye and
  right eye; the regressor averages vertex rings and the eyeballs; skinning weights are smooth fields
  (the lower face and the lower teeth follow the jaw, eyeballs their eye, the lower neck the root).
  Pose correctives (``posedirs``) are fitted by least squares so that LBS of the jaw and the neck
  follows a per-vertex interpolated rotation (no "candy wrapper" collapse at the mouth corners).
* **Identity** components are finite differences of the generator under changes of its design
  parameters (head width, face length, nose size, ...); **expression** components are smooth
  displacement fields of speech mouth shapes, blinks and brows (see ``EXPRESSION_NAMES``).

Coefficients are in "full articulation" units: 1.0 is a complete closure, a full pucker, a closed
eye; values around 0..1 (and -1..1 for identity) are the meaningful range.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from l2t_gs.io.atomic import atomic_path

SHAPE_NAMES: tuple[str, ...] = (
    "head_width",
    "face_length",
    "nose_size",
    "jaw_width",
    "chin_forward",
    "lip_fullness",
    "eye_spacing",
    "cranium_length",
)

EXPRESSION_NAMES: tuple[str, ...] = (
    "lip_close",  # 0: upper and lower lip meet (closes the neutral 2 mm gap)
    "lip_press",  # 1: lips thin and press inward (use with lip_close for p/b/m)
    "pucker",  # 2: rounding: corners in, lips forward, round opening (u, w, o)
    "spread",  # 3: corners out, up and back (i, smile)
    "upper_lip_raise",  # 4: upper lip up (f/v helper, sneer, open vowels)
    "lower_lip_drop",  # 5: lower lip down and everted (sh, ch)
    "labiodental",  # 6: lower lip up and back onto the upper incisors (f, v)
    "blink_left",  # 7: left upper lid closes onto the lower lid
    "blink_right",  # 8: right upper lid closes
    "brow_raise",  # 9: both brows up
    "brow_lower",  # 10: brows down and together (frown)
    "mouth_corners_down",  # 11: corners down (sad)
)

JOINT_NAMES: tuple[str, ...] = ("root", "neck", "jaw", "left_eye", "right_eye")
PARENTS: tuple[int, ...] = (-1, 0, 1, 1, 1)

# Grid resolution of the skin and of the parts (fixed: the topology never depends on the design).
N_ROWS = 70
N_COLS = 100
EYE_ROWS, EYE_COLS = 12, 18
EAR_ROWS, EAR_COLS = 9, 14
TEETH_ARC = 14
MOUTH_RINGS = (
    # (x scale, y offset from the mouth line (sign by side), z offset from the lip edge)
    (1.00, 0.002, -0.004),
    (0.95, 0.011, -0.011),
    (0.85, 0.015, -0.024),
    (0.60, 0.012, -0.040),
    (0.30, 0.006, -0.050),
)

_RAY_ORIGIN = np.array([0.0, 0.0, 0.0])


@dataclass(frozen=True)
class HeadDesign:
    """Design parameters of the generated head (metres). Defaults are the template."""

    width: float = 1.0  # scales x of skull and face
    face_length: float = 1.0  # scales heights below the eye line
    nose_size: float = 1.0
    jaw_width: float = 1.0
    chin_forward: float = 0.0  # metres
    lip_fullness: float = 1.0
    eye_spacing: float = 0.032  # half distance between eye centres
    cranium_length: float = 1.0
    eye_y: float = 0.025
    mouth_y: float = -0.055
    neck_cut_y: float = -0.20
    eyeball_radius: float = 0.0122
    lip_gap: float = 0.002  # neutral opening between the lips at the centre
    eye_open_up: float = 0.0052  # neutral upper-lid rise at the eye centre (radians * r, approx.)
    eye_open_down: float = 0.0036

    def fy(self, y: float) -> float:
        """Apply ``face_length`` to a height below the eye line."""
        return y if y >= self.eye_y else self.eye_y + (y - self.eye_y) * self.face_length


# Identity components: (design field, step of one unit)
SHAPE_STEPS: tuple[tuple[str, float], ...] = (
    ("width", 0.05),
    ("face_length", 0.06),
    ("nose_size", 0.15),
    ("jaw_width", 0.10),
    ("chin_forward", 0.004),
    ("lip_fullness", 0.20),
    ("eye_spacing", 0.002),
    ("cranium_length", 0.05),
)


# ----------------------------------------------------------------------------------------------
# implicit head


def _ellipsoid(p: np.ndarray, c, r) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipsoid. p [...,3]."""
    r = np.asarray(r, dtype=np.float64)
    q = (p - np.asarray(c)) / r
    k0 = np.linalg.norm(q, axis=-1)
    k1 = np.linalg.norm(q / r, axis=-1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def _smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    return -_smin(-a, -b, k)


def _rot_x(p: np.ndarray, c, angle: float) -> np.ndarray:
    """Rotate points about the x axis through c (used to tilt the nose)."""
    q = p - np.asarray(c)
    ca, sa = math.cos(angle), math.sin(angle)
    y = ca * q[..., 1] - sa * q[..., 2]
    z = sa * q[..., 1] + ca * q[..., 2]
    return np.stack([q[..., 0], y, z], axis=-1) + np.asarray(c)


def eye_centers(d: HeadDesign) -> np.ndarray:
    """Eyeball centres [2,3]: left (+x) then right (-x)."""
    z = 0.0635
    return np.array([[d.eye_spacing, d.eye_y, z], [-d.eye_spacing, d.eye_y, z]])


def head_field(p: np.ndarray, d: HeadDesign) -> np.ndarray:
    """Implicit head: negative inside. p [...,3] -> [...]."""
    w, fy = d.width, d.fy
    x = p[..., 0]
    y = p[..., 1]
    # the lower face narrows toward the chin; the jaw width scales that taper
    taper = 1.0 - (0.30 / d.jaw_width) * np.clip((-0.025 - y) / 0.08, 0.0, 1.0)
    pt = np.stack([x / taper, y, p[..., 2]], axis=-1)

    f = _ellipsoid(p, (0, 0.030, -0.012 * d.cranium_length), (0.074 * w, 0.088, 0.100 * d.cranium_length))
    f = _smin(f, _ellipsoid(p, (0, 0.045, 0.020), (0.066 * w, 0.060, 0.072)), 0.01)
    f = _smin(f, _ellipsoid(pt, (0, fy(-0.035), 0.020), (0.062 * w, 0.075 * d.face_length, 0.066)), 0.012)
    for s in (1, -1):
        f = _smin(f, _ellipsoid(p, (s * 0.046 * w * d.jaw_width, fy(-0.058), -0.008), (0.017, 0.030, 0.030)), 0.012)
        f = _smin(f, _ellipsoid(p, (s * 0.045 * w, 0.002, 0.042), (0.024, 0.019, 0.030)), 0.012)
        f = _smin(f, _ellipsoid(p, (s * 0.034 * w, fy(-0.030), 0.052), (0.027, 0.030, 0.030)), 0.012)
    f = _smin(f, _ellipsoid(p, (0, d.eye_y + 0.016, 0.062), (0.058 * w, 0.014, 0.024)), 0.012)
    # nose: tilted bridge, tip, wings
    ns = d.nose_size
    bridge_c = (0, fy(0.002), 0.083)
    f = _smin(f, _ellipsoid(_rot_x(p, bridge_c, 0.38), bridge_c, (0.010 * ns, 0.034 * ns, 0.016 * ns)), 0.010)
    f = _smin(f, _ellipsoid(p, (0, fy(-0.019), 0.082 + 0.022 * ns), (0.0115 * ns, 0.0105 * ns, 0.012 * ns)), 0.008)
    for s in (1, -1):
        f = _smin(f, _ellipsoid(p, (s * 0.0125 * ns, fy(-0.024), 0.091), (0.0085 * ns, 0.0068, 0.0095)), 0.004)
    # mouth: muzzle, lips, chin
    lf = d.lip_fullness
    f = _smin(f, _ellipsoid(p, (0, fy(-0.050), 0.063), (0.034, 0.030 * d.face_length, 0.030)), 0.010)
    f = _smin(f, _ellipsoid(p, (0, fy(-0.0485), 0.0875), (0.025, 0.0078 * lf, 0.0105 * lf)), 0.005)
    f = _smin(f, _ellipsoid(p, (0, fy(-0.0615), 0.0855), (0.022, 0.0080 * lf, 0.0110 * lf)), 0.005)
    f = _smin(f, _ellipsoid(p, (0, fy(-0.090), 0.068 + d.chin_forward), (0.021 * d.jaw_width, 0.016, 0.018)), 0.008)
    # neck: elliptic cylinder below the skull, rounded top
    neck = _ellipsoid(np.stack([x, np.zeros_like(y), p[..., 2]], axis=-1), (0, 0, -0.018), (0.052 * w, 1.0, 0.058))
    neck = np.maximum(neck, y - 0.0)
    f = _smin(f, neck, 0.025)
    # eye sockets carved, eyeballs (slightly enlarged so the lids sit just outside them) blended in
    for c in eye_centers(d):
        f = _smax(f, -_ellipsoid(p, c + (0, -0.001, 0.014), (0.0155, 0.0105, 0.011)), 0.006)
        f = _smin(f, np.linalg.norm(p - c, axis=-1) - (d.eyeball_radius + 0.0007), 0.002)
    return f


def _ray_dirs(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Unit directions for polar angle theta (from +y) and azimuth phi (0 = +z, + toward +x)."""
    st = np.sin(theta)
    return np.stack([st * np.sin(phi), np.cos(theta), st * np.cos(phi)], axis=-1)


def _cast(d: HeadDesign, dirs: np.ndarray, t_max: float = 0.4, samples: int = 160, iters: int = 32) -> np.ndarray:
    """Distance along each ray from the origin to the head's outermost surface crossing. dirs [...,3].

    The ray is sampled densely; the last inside sample brackets the outer crossing, refined by
    bisection. Taking the outermost crossing keeps neighbouring rays on the same sheet.
    """
    ts = np.linspace(0.0, t_max, samples)
    inside = head_field(_RAY_ORIGIN + ts[:, None, None] * dirs.reshape(1, -1, 3), d) < 0  # [S,N]
    last = samples - 1 - np.argmax(inside[::-1], axis=0)
    lo = ts[last]
    hi = ts[np.minimum(last + 1, samples - 1)]
    flat = dirs.reshape(-1, 3)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        ins = head_field(_RAY_ORIGIN + mid[:, None] * flat, d) < 0
        lo = np.where(ins, mid, lo)
        hi = np.where(ins, hi, mid)
    return (0.5 * (lo + hi)).reshape(dirs.shape[:-1])


def _theta_at_height(d: HeadDesign, phi: np.ndarray, y: float, iters: int = 8) -> np.ndarray:
    """Polar angle per azimuth whose ray meets the surface at height y (fixed-point iteration)."""
    theta = np.full(phi.shape, math.pi / 2)
    for _ in range(iters):
        dirs = _ray_dirs(theta, phi)
        hit = dirs * _cast(d, dirs)[..., None]
        rho = np.hypot(hit[..., 0], hit[..., 2])
        theta = math.pi / 2 - np.arctan2(y, rho)
    return theta


def _theta_neck_cut(d: HeadDesign, phi: np.ndarray) -> np.ndarray:
    """Polar angle per azimuth where the ray meets the neck cylinder at the cut height."""
    rx, rz, zc = 0.052 * d.width, 0.058, -0.018
    sp, cp = np.sin(phi), np.cos(phi)
    # (s sp / rx)^2 + ((s cp - zc) / rz)^2 = 1, solved for s > 0
    a = (sp / rx) ** 2 + (cp / rz) ** 2
    b = -2 * cp * zc / rz**2
    c = (zc / rz) ** 2 - 1
    s = (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)
    return math.pi - np.arctan2(s, -d.neck_cut_y)


# ----------------------------------------------------------------------------------------------
# topology (computed once from the default design)


def _inverse_cdf(density, lo: float, hi: float, n: int, samples: int = 20000) -> np.ndarray:
    xs = np.linspace(lo, hi, samples)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density(xs[1:]) + density(xs[:-1])) * np.diff(xs))])
    cdf /= cdf[-1]
    return np.interp(np.linspace(0, 1, n), cdf, xs)


@dataclass
class _Topology:
    t_rows: np.ndarray  # [N_ROWS] base polar angles (row 0 is the top pole)
    t_cols: np.ndarray  # [N_COLS] base azimuths
    row_eye: int
    row_mouth: int
    knots_theta: np.ndarray  # base row knots (0, eye, mouth, 1) as normalised row coords
    knots_phi: np.ndarray  # base azimuth knots
    mouth_cols: tuple[int, int]  # corner columns (inclusive)
    eye_cols: tuple[tuple[int, int], tuple[int, int]]  # (left, right) eye corner columns
    n_skin: int = 0
    faces: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    info: dict = field(default_factory=dict)


def _phi_knots(d: HeadDesign) -> np.ndarray:
    """Azimuth landmarks: eye outer, mouth corner, eye inner (both sides), increasing."""
    ec = eye_centers(d)[0]
    inner = math.atan2(ec[0] - 0.0135, ec[2] + 0.012)
    outer = math.atan2(ec[0] + 0.0135, ec[2] + 0.002)
    corner = math.atan2(0.0245, 0.080)
    return np.array([-math.pi, -outer, -corner, -inner, inner, corner, outer, math.pi])


def _build_topology(d: HeadDesign) -> _Topology:
    # rows: polar angle from 0 (top) to 1 (neck cut) in normalised units, dense at eyes and mouth
    th_e = float(_theta_at_height(d, np.array([0.0]), d.eye_y)[0])
    th_m = float(_theta_at_height(d, np.array([0.0]), d.fy(d.mouth_y))[0])
    th_c = float(_theta_neck_cut(d, np.array([0.0]))[0])
    te, tm = th_e / th_c, th_m / th_c

    def row_density(t):
        return 1.0 + 2.5 * np.exp(-(((t - te) / 0.06) ** 2)) + 3.0 * np.exp(-(((t - tm) / 0.07) ** 2))

    rows = _inverse_cdf(row_density, 0.0, 1.0, N_ROWS)
    row_eye = int(np.argmin(np.abs(rows - te)))
    row_mouth = int(np.argmin(np.abs(rows - tm)))
    rows[row_eye], rows[row_mouth] = te, tm

    kphi = _phi_knots(d)

    def col_density(p):
        return 1.0 + 2.2 * np.exp(-((p / 0.75) ** 4))

    cols = _inverse_cdf(col_density, -math.pi, math.pi, N_COLS + 1)[:-1]
    snapped = []
    for k in kphi[1:-1]:
        j = int(np.argmin(np.abs(cols - k)))
        cols[j] = k
        snapped.append(j)
    jro, jmr, jri, jli, jml, jlo = snapped  # right outer, mouth right, right inner, left inner, ...
    topo = _Topology(
        t_rows=rows,
        t_cols=cols,
        row_eye=row_eye,
        row_mouth=row_mouth,
        knots_theta=np.array([0.0, te, tm, 1.0]),
        knots_phi=kphi,
        mouth_cols=(jmr, jml),
        eye_cols=((jli, jlo), (jro, jri)),
    )
    return topo


# ----------------------------------------------------------------------------------------------
# geometry for a design on the fixed topology


@dataclass
class _Geometry:
    verts: np.ndarray
    faces: np.ndarray
    part: np.ndarray  # per-vertex part id (see PART_*)
    side: np.ndarray  # +1 upper / -1 lower half of an opening's neighbourhood, 0 elsewhere
    ring: np.ndarray  # ring depth inside an opening (0 on the skin)
    edge_src: np.ndarray  # for rim/cavity vertices: the lip/lid edge vertex they hang from, else -1
    grid_rc: np.ndarray  # skin vertices: (row, col); -1 elsewhere
    joints_idx: dict


PART_SKIN, PART_MOUTH, PART_EYE_RIM, PART_EYE_L, PART_EYE_R, PART_TEETH_UP, PART_TEETH_LO, PART_EAR = range(8)


def _warp(x: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return np.interp(x, src, dst)


def _opening_profile(s: np.ndarray, power: float = 0.8) -> np.ndarray:
    return np.clip(1.0 - s**2, 0.0, None) ** power


def _build_geometry(d: HeadDesign, topo: _Topology) -> _Geometry:
    R, C = N_ROWS, N_COLS
    cols = _warp(topo.t_cols, topo.knots_phi, _phi_knots(d))  # [C]
    th_e = _theta_at_height(d, cols, d.eye_y)
    th_m = _theta_at_height(d, cols, d.fy(d.mouth_y))
    th_c = _theta_neck_cut(d, cols)
    # per column: piecewise-linear map of normalised row coordinate -> polar angle
    t = topo.t_rows[:, None]  # [R,1]
    ke, km = topo.knots_theta[1], topo.knots_theta[2]
    theta = np.where(
        t <= ke,
        t / ke * th_e,
        np.where(t <= km, th_e + (t - ke) / (km - ke) * (th_m - th_e), th_m + (t - km) / (1 - km) * (th_c - th_m)),
    )  # [R,C]
    phi = np.broadcast_to(cols, (R, C)).copy()

    # --- openings: slits doubled between the corners, opened in parameter space
    side = np.zeros((R, C))  # upper/lower label of skin vertices near an opening

    def open_slit(row: int, j0: int, j1: int, up: float, down: float, reach: float) -> np.ndarray:
        """Open rows around `row` between columns j0..j1; returns the lower-copy theta row."""
        js = np.arange(j0, j1 + 1)
        s = (cols[js] - 0.5 * (cols[j0] + cols[j1])) / (0.5 * (cols[j1] - cols[j0]))
        prof = _opening_profile(s)
        rad = np.linalg.norm(_ray_dirs(theta[row, js], cols[js]) * 1.0, axis=-1)  # unit
        base = theta[row, js].copy()
        r_hit = _cast(d, _ray_dirs(base, cols[js]))
        a_up = up * prof / r_hit * rad
        a_dn = down * prof / r_hit * rad
        dist = theta[:, js] - base[None]  # [R,n] signed polar distance from the slit row
        above = dist < 0
        fall = np.clip(1.0 - np.abs(dist) / reach, 0.0, 1.0) ** 2
        theta[:, js] = np.where(above, theta[:, js] - a_up * fall, theta[:, js] + a_dn * fall)
        theta[row, js] = base - a_up
        near = np.abs(dist) < reach
        side[:, js] = np.where(near & above, 1.0, np.where(near, -1.0, side[:, js]))
        side[row, js] = 1.0
        return base + a_dn

    jm0, jm1 = topo.mouth_cols
    lower_mouth = open_slit(topo.row_mouth, jm0, jm1, d.lip_gap / 2, d.lip_gap / 2, 0.25)
    lower_eyes = []
    for j0, j1 in topo.eye_cols:
        lower_eyes.append(open_slit(topo.row_eye, j0, j1, d.eye_open_up, d.eye_open_down, 0.22))

    # --- skin vertices
    dirs = _ray_dirs(theta[1:], phi[1:])  # row 0 is the pole
    skin = dirs * _cast(d, dirs)[..., None]  # [R-1,C,3]
    top = np.array([[0.0, _cast(d, np.array([[0.0, 1.0, 0.0]]))[0], 0.0]])
    skin[-1, :, 1] = d.neck_cut_y  # the cut is planar
    verts = [top, skin.reshape(-1, 3)]
    vid = np.full((R, C), -1, dtype=np.int64)
    vid[0, :] = 0
    vid[1:] = 1 + np.arange((R - 1) * C).reshape(R - 1, C)
    n = 1 + (R - 1) * C
    part = [np.zeros(n, np.int64)]
    side_l = [np.concatenate([[0.0], side[1:].reshape(-1)])]
    ring_l = [np.zeros(n, np.int64)]
    edge_l = [np.full(n, -1, np.int64)]
    grid_rc = np.full((n, 2), -1, np.int64)
    grid_rc[0] = (0, 0)
    rr, cc = np.meshgrid(np.arange(1, R), np.arange(C), indexing="ij")
    grid_rc[1:] = np.stack([rr.reshape(-1), cc.reshape(-1)], -1)

    def add(v, p, s=0.0, r=0, e=-1):
        nonlocal n
        v = np.asarray(v, dtype=np.float64).reshape(-1, 3)
        k = len(v)
        ids = np.arange(n, n + k)
        verts.append(v)
        part.append(np.full(k, p, np.int64))
        side_l.append(np.broadcast_to(np.asarray(s, np.float64), (k,)).copy())
        ring_l.append(np.broadcast_to(np.asarray(r, np.int64), (k,)).copy())
        edge_l.append(np.broadcast_to(np.asarray(e, np.int64), (k,)).copy())
        n += k
        return ids

    # lower copies of slit vertices (interior columns only; corners are shared)
    below = vid.copy()  # vertex ids used by faces *below* a slit row

    def add_lower_copies(row, j0, j1, th_low, p):
        js = np.arange(j0 + 1, j1)
        tl = th_low[1:-1]
        dl = _ray_dirs(tl, cols[js])
        ids = add(dl * _cast(d, dl)[..., None], p, s=-1.0)
        below[row, js] = ids
        return ids

    lower_mouth_ids = add_lower_copies(topo.row_mouth, jm0, jm1, lower_mouth, PART_SKIN)
    lower_eye_ids = [
        add_lower_copies(topo.row_eye, j0, j1, lo, PART_SKIN)
        for (j0, j1), lo in zip(topo.eye_cols, lower_eyes, strict=False)
    ]

    faces = []
    # pole fan
    j = np.arange(C)
    faces.append(np.stack([np.zeros(C, np.int64), vid[1, j], vid[1, (j + 1) % C]], -1))
    # quads: row i (top) uses `vid`, row i+1 uses `vid`; for a slit row i, the quad below uses `below`
    for i in range(1, R - 1):
        a = below[i, j]
        b = below[i, (j + 1) % C]
        c = vid[i + 1, (j + 1) % C]
        e = vid[i + 1, j]
        faces.append(np.stack([a, c, b], -1))
        faces.append(np.stack([a, e, c], -1))

    # hole loops: upper edge left->right (increasing column), lower edge back
    def loop(row, j0, j1):
        up = vid[row, j0 : j1 + 1]
        lo = below[row, j1 - 1 : j0 : -1]
        sides = np.concatenate([np.ones(len(up)), -np.ones(len(lo))])
        sides[0] = sides[len(up) - 1] = 0.0
        return np.concatenate([up, lo]), sides

    V = np.concatenate(verts)

    # --- mouth cavity
    mloop, mside = loop(topo.row_mouth, jm0, jm1)
    edge_pts = V[mloop]
    yc = d.fy(d.mouth_y)
    zc = float(V[vid[topo.row_mouth, (jm0 + jm1) // 2], 2])
    prev = mloop
    ring_ids = []
    for k, (xs, dy, dz) in enumerate(MOUTH_RINGS, start=1):
        if k == 1:
            p = edge_pts + np.stack([np.zeros(len(mloop)), mside * dy, np.full(len(mloop), dz)], -1)
        else:
            x = edge_pts[:, 0] * xs
            env = np.sqrt(_opening_profile(edge_pts[:, 0] / np.abs(edge_pts[:, 0]).max(), 1.0))
            p = np.stack([x, yc + mside * dy * env, zc + dz - 22.0 * x**2], -1)
        ids = add(p, PART_MOUTH, s=mside, r=k, e=mloop)
        ring_ids.append(ids)
        faces.append(_ring_faces(prev, ids))
        prev = ids
    center = add([[0.0, yc, zc + MOUTH_RINGS[-1][2] - 0.003]], PART_MOUTH, s=0.0, r=len(MOUTH_RINGS) + 1)
    m = len(prev)
    faces.append(np.stack([np.roll(prev, -1), prev, np.full(m, center[0])], -1))

    # --- eye rims (one ring inset toward the eyeball centre, left open behind the eye)
    ecs = eye_centers(d)
    eye_loops = []
    for (j0, j1), ec in zip(topo.eye_cols, ecs, strict=False):
        eloop, eside = loop(topo.row_eye, j0, j1)
        Vn = np.concatenate(verts)
        pts = Vn[eloop]
        dirn = ec - pts
        dirn /= np.linalg.norm(dirn, axis=-1, keepdims=True)
        ids = add(pts + 0.0035 * dirn, PART_EYE_RIM, s=eside, r=1, e=eloop)
        faces.append(_ring_faces(eloop, ids))
        eye_loops.append((eloop, eside))

    # --- eyeballs: pole along the gaze axis (+z)
    eye_ids = []
    for k, ec in enumerate(ecs):
        sv, sf = _sphere(EYE_ROWS, EYE_COLS)
        ids = add(ec + d.eyeball_radius * sv, PART_EYE_L if k == 0 else PART_EYE_R)
        faces.append(sf + ids[0])
        eye_ids.append(ids)

    # --- teeth along the dental arch, behind the lips
    z_front = zc - 0.0055
    for upper in (True, False):
        tv, tf = _teeth(upper, yc, z_front)
        ids = add(tv, PART_TEETH_UP if upper else PART_TEETH_LO, s=1.0 if upper else -1.0)
        faces.append(tf + ids[0])

    # --- ears
    for s in (1, -1):
        ev, ef = _sphere(EAR_ROWS, EAR_COLS, axis="y")
        ev = ev * np.array([0.0075, 0.029, 0.017])
        ang = s * 0.35
        rot = np.array([[math.cos(ang), 0, math.sin(ang)], [0, 1, 0], [-math.sin(ang), 0, math.cos(ang)]])
        ev = ev @ rot.T + np.array([s * 0.0745 * d.width, 0.006, -0.008])
        ids = add(ev, PART_EAR)
        faces.append(ef + ids[0])

    V = np.concatenate(verts)
    F = np.concatenate(faces).astype(np.int64)
    geo = _Geometry(
        verts=V,
        faces=F,
        part=np.concatenate(part),
        side=np.concatenate(side_l),
        ring=np.concatenate(ring_l),
        edge_src=np.concatenate(edge_l),
        grid_rc=np.concatenate([grid_rc, np.full((len(V) - len(grid_rc), 2), -1, np.int64)]),
        joints_idx={
            "mouth_loop": mloop,
            "mouth_side": mside,
            "mouth_lower_ids": lower_mouth_ids,
            "eye_loops": eye_loops,
            "eye_lower_ids": lower_eye_ids,
            "eye_ids": eye_ids,
            "vid": vid,
            "below": below,
            "rings": ring_ids,
            "mouth_center": center,
        },
    )
    return geo


def _ring_faces(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Faces joining two closed loops of equal length (a outer, b inner), consistently wound."""
    a1, b1 = np.roll(a, -1), np.roll(b, -1)
    return np.concatenate([np.stack([a, b, b1], -1), np.stack([a, b1, a1], -1)])


def _sphere(rows: int, cols: int, axis: str = "z") -> tuple[np.ndarray, np.ndarray]:
    """Unit lat-long sphere with poles on ``axis``; outward-wound faces."""
    th = np.linspace(0, math.pi, rows + 1)[1:-1]
    ph = np.linspace(0, 2 * math.pi, cols, endpoint=False)
    T, P = np.meshgrid(th, ph, indexing="ij")
    a, b, c = np.cos(T), np.sin(T) * np.cos(P), np.sin(T) * np.sin(P)
    if axis == "z":
        ring = np.stack([b, c, a], -1).reshape(-1, 3)
        poles = np.array([[0, 0, 1.0], [0, 0, -1.0]])
    else:
        ring = np.stack([c, a, b], -1).reshape(-1, 3)
        poles = np.array([[0, 1.0, 0], [0, -1.0, 0]])
    v = np.concatenate([poles[:1], ring, poles[1:]])
    nr = rows - 1
    idx = 1 + np.arange(nr * cols).reshape(nr, cols)
    j = np.arange(cols)
    f = [np.stack([np.zeros(cols, np.int64), idx[0, j], idx[0, (j + 1) % cols]], -1)]
    for i in range(nr - 1):
        f.append(np.stack([idx[i, j], idx[i + 1, j], idx[i + 1, (j + 1) % cols]], -1))
        f.append(np.stack([idx[i, j], idx[i + 1, (j + 1) % cols], idx[i, (j + 1) % cols]], -1))
    last = len(v) - 1
    f.append(np.stack([np.full(cols, last), idx[-1, (j + 1) % cols], idx[-1, j]], -1))
    f = np.concatenate(f)
    # make outward: check orientation of the first face
    tri = v[f[0]]
    nrm = np.cross(tri[1] - tri[0], tri[2] - tri[0])
    if np.dot(nrm, tri.mean(0)) < 0:
        f = f[:, ::-1]
    return v, np.ascontiguousarray(f)


def _teeth(upper: bool, y_mouth: float, z_front: float) -> tuple[np.ndarray, np.ndarray]:
    """A curved bar of teeth along a parabolic arch; closed box cross-section. Returns verts, faces."""
    half = 0.021
    xs = np.linspace(-half, half, TEETH_ARC)
    z = z_front - 22.0 * xs**2 - (0.0 if upper else 0.0012)
    sgn = 1.0 if upper else -1.0
    edge_y = y_mouth + (0.0006 if upper else -0.0015)
    root_y = edge_y + sgn * 0.0095
    th = 0.0045
    # cross-section corners: front-edge, front-root, back-root, back-edge (tangent-normal offset)
    dz = np.gradient(z, xs)
    nrm = np.stack([dz, -np.ones_like(xs)], -1)  # pointing backward (into the mouth)
    nrm /= np.linalg.norm(nrm, axis=-1, keepdims=True)
    corners = []
    for yy, back in ((edge_y, 0.0), (root_y, 0.0), (root_y, th), (edge_y, th * 0.6)):
        corners.append(np.stack([xs + back * nrm[:, 0], np.full_like(xs, yy), z + back * nrm[:, 1]], -1))
    v = np.stack(corners, axis=1).reshape(-1, 3)  # [arc*4,3]
    idx = np.arange(TEETH_ARC * 4).reshape(TEETH_ARC, 4)
    f = []
    for k in range(4):
        a, b = idx[:-1, k], idx[:-1, (k + 1) % 4]
        c, e = idx[1:, (k + 1) % 4], idx[1:, k]
        f.append(np.stack([a, c, b], -1))
        f.append(np.stack([a, e, c], -1))
    f.append(np.array([[idx[0, 0], idx[0, 1], idx[0, 2]], [idx[0, 0], idx[0, 2], idx[0, 3]]]))
    f.append(np.array([[idx[-1, 0], idx[-1, 2], idx[-1, 1]], [idx[-1, 0], idx[-1, 3], idx[-1, 2]]]))
    f = np.concatenate(f)
    # outward orientation relative to the bar's local centre
    cen = v.reshape(TEETH_ARC, 4, 3).mean(1)
    tri = v[f]
    nrm3 = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    k = np.clip((f[:, 0] // 4), 0, TEETH_ARC - 1)
    if np.mean(np.sum(nrm3 * (tri.mean(1) - cen[k]), -1) > 0) < 0.5:
        f = f[:, ::-1]
    return v, np.ascontiguousarray(f)


# ----------------------------------------------------------------------------------------------
# rig: joints, weights, correctives, blendshapes, masks


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _rodrigues(aa: np.ndarray) -> np.ndarray:
    """Axis-angle [N,3] -> rotation matrices [N,3,3]."""
    th = np.linalg.norm(aa, axis=-1, keepdims=True)
    k = aa / np.maximum(th, 1e-12)
    kx = np.zeros(aa.shape[:-1] + (3, 3))
    kx[..., 0, 1], kx[..., 0, 2], kx[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    kx = kx - np.swapaxes(kx, -1, -2)
    s, c = np.sin(th)[..., None], np.cos(th)[..., None]
    return np.eye(3) + s * kx + (1 - c) * kx @ kx


class _Rig:
    """Everything derived from the template geometry (one design)."""

    def __init__(self, d: HeadDesign, topo: _Topology, geo: _Geometry):
        self.d, self.topo, self.geo = d, topo, geo
        P = geo.verts
        self.P = P
        self.n = len(P)
        self.y_m = d.fy(d.mouth_y)
        ji = geo.joints_idx
        self.vid, self.below = ji["vid"], ji["below"]
        jm0, jm1 = topo.mouth_cols
        self.mouth_js = np.arange(jm0 + 1, jm1)
        self.mouth_hw = float(np.abs(P[ji["mouth_loop"], 0]).max())
        # column index of every skin vertex (lower slit copies included), -1 elsewhere
        col = geo.grid_rc[:, 1].copy()
        col[ji["mouth_lower_ids"]] = self.mouth_js
        for (j0, j1), ids in zip(topo.eye_cols, ji["eye_lower_ids"], strict=False):
            col[ids] = np.arange(j0 + 1, j1)
        col[geo.part != PART_SKIN] = -1
        self.col = col

    # --- helpers -------------------------------------------------------------------------
    def column_field(
        self, row: int, j0: int, j1: int, up: np.ndarray, lo: np.ndarray, reach_up: float, reach_lo: float
    ) -> np.ndarray:
        """Displacement of skin vertices around a slit: edge motions up/lo [n,3] per interior column
        (j0+1..j1-1), fading with vertical distance from that column's edge over ``reach``."""
        P, g = self.P, self.geo
        js = np.arange(j0 + 1, j1)
        lut = np.full(N_COLS, -1)
        lut[js] = np.arange(len(js))
        k = np.where(self.col >= 0, lut[np.maximum(self.col, 0)], -1)
        sel = (k >= 0) & (g.side != 0)
        out = np.zeros_like(P)
        kk = k[sel]
        upper = g.side[sel] > 0
        y_up = P[self.vid[row, js], 1][kk]
        y_lo = P[self.below[row, js], 1][kk]
        dist = np.where(upper, P[sel, 1] - y_up, y_lo - P[sel, 1])
        fall = np.clip(1 - np.abs(dist) / np.where(upper, reach_up, reach_lo), 0, 1) ** 2
        out[sel] = np.where(upper[:, None], up[kk], lo[kk]) * fall[:, None]
        return out

    def mouth_field(self, up: np.ndarray, lo: np.ndarray, reach_up: float, reach_lo: float) -> np.ndarray:
        j0, j1 = self.topo.mouth_cols
        return self.column_field(self.topo.row_mouth, j0, j1, up, lo, reach_up, reach_lo)

    def mouth_profile(self, power: float) -> np.ndarray:
        x = self.P[self.vid[self.topo.row_mouth, self.mouth_js], 0]
        return _opening_profile(x / self.mouth_hw, power)

    def propagate(self, disp: np.ndarray) -> np.ndarray:
        """Cavity and eye-rim vertices follow the lip/lid edge they hang from."""
        g = self.geo
        out = disp.copy()
        hang = g.edge_src >= 0
        factor = np.where(g.part == PART_MOUTH, np.array([1.0, 1.0, 0.8, 0.5, 0.25, 0.1, 0.0, 0.0])[g.ring], 1.0)
        out[hang] = disp[g.edge_src[hang]] * factor[hang, None]
        return out

    # --- expression basis -----------------------------------------------------------------
    def expressions(self) -> np.ndarray:
        """Expression displacement fields [V,3,E] in EXPRESSION_NAMES order."""
        P, g, d = self.P, self.geo, self.d
        x, y, z = P[:, 0], P[:, 1], P[:, 2]
        skin = (g.part == PART_SKIN).astype(float)
        front = _smoothstep(0.03, 0.07, z) * skin
        dy = y - self.y_m
        hw = self.mouth_hw
        Wm = np.exp(-((x / 0.032) ** 2) - (dy / 0.018) ** 2) * front  # mouth surroundings
        Wl = np.exp(-((x / 0.026) ** 2) - (dy / 0.012) ** 2) * front  # lips
        Cn = np.exp(-(((np.abs(x) - hw) / 0.013) ** 2) - (dy / 0.014) ** 2) * front  # mouth corners
        sx = np.sign(x)
        row = self.topo.row_mouth
        gap = P[self.vid[row, self.mouth_js]] - P[self.below[row, self.mouth_js]]  # [n,3] upper - lower
        prof = self.mouth_profile(0.6)[:, None]
        zeros = np.zeros_like(gap)

        def vec(*c):
            return np.broadcast_to(np.asarray(c, float), gap.shape)

        E = []
        # 0 lip_close
        E.append(self.mouth_field(-gap / 2, gap / 2, 0.009, 0.009))
        # 1 lip_press
        e = np.zeros_like(P)
        e[:, 2] = -0.0025 * Wl
        e[:, 0] = -0.0020 * sx * Cn
        E.append(e)
        # 2 pucker
        e = np.zeros_like(P)
        e[:, 0] = -0.35 * x * Wm
        e[:, 2] = 0.008 * Wl + 0.003 * Wm
        e += self.mouth_field(vec(0, 0.0015, 0) * prof, vec(0, -0.0015, 0) * prof, 0.008, 0.008)
        E.append(e)
        # 3 spread
        e = np.zeros_like(P)
        e[:, 0] = 0.0075 * sx * Cn + 0.12 * x * Wl
        e[:, 1] = 0.0035 * Cn
        e[:, 2] = -0.003 * Cn
        cheek = np.exp(-(((np.abs(x) - 0.035) / 0.015) ** 2) - ((y - (self.y_m + 0.03)) / 0.015) ** 2) * front
        e[:, 1] += 0.002 * cheek
        E.append(e)
        # 4 upper_lip_raise
        E.append(self.mouth_field(vec(0, 0.0045, 0.0012) * prof, zeros, 0.016, 0.01))
        # 5 lower_lip_drop
        E.append(self.mouth_field(zeros, vec(0, -0.0045, 0.0015) * prof, 0.01, 0.016))
        # 6 labiodental: lower lip up and back under the upper incisors, upper lip lifts a little
        p5 = self.mouth_profile(0.5)[:, None]
        lo = vec(0, 1, 0) * (0.5 * np.abs(gap[:, 1:2]) + 0.0017) * p5 + vec(0, 0, -0.0042) * p5
        E.append(self.mouth_field(vec(0, 0.0012, 0.0005) * p5, lo, 0.01, 0.012))
        # 7, 8 blinks: the upper lid edge travels 85% of the way to the lower lid, the lower lid 15%
        for j0, j1 in self.topo.eye_cols:
            js = np.arange(j0 + 1, j1)
            r = self.topo.row_eye
            opening = P[self.below[r, js]] - P[self.vid[r, js]]  # lower - upper
            E.append(self.column_field(r, j0, j1, 0.85 * opening, -0.15 * opening, 0.012, 0.005))
        # 9 brow_raise
        ye = d.eye_y
        brow = np.exp(-(((np.abs(x) - 0.03) / 0.025) ** 2) - ((y - (ye + 0.02)) / 0.014) ** 2) * front
        e = np.zeros_like(P)
        e[:, 1] = 0.005 * brow
        E.append(e)
        # 10 brow_lower
        inner = np.exp(-(((np.abs(x) - 0.018) / 0.015) ** 2) - ((y - (ye + 0.018)) / 0.01) ** 2) * front
        e = np.zeros_like(P)
        e[:, 0] = -0.002 * sx * inner
        e[:, 1] = -0.0035 * inner
        e[:, 2] = 0.001 * inner
        E.append(e)
        # 11 mouth_corners_down
        e = np.zeros_like(P)
        e[:, 1] = -0.0045 * Cn
        e[:, 2] = -0.001 * Cn
        E.append(e)
        assert len(E) == len(EXPRESSION_NAMES)
        return np.stack([self.propagate(e) for e in E], axis=-1)

    # --- skinning ------------------------------------------------------------------------
    def weights(self) -> np.ndarray:
        """Skinning weights [V,5] (rows sum to 1)."""
        P, g = self.P, self.geo
        y, z = P[:, 1], P[:, 2]
        jaw = (
            _smoothstep(self.y_m + 0.004, self.y_m - 0.022, y)
            * _smoothstep(-0.015, 0.02, z)
            * _smoothstep(-0.135, -0.105, y)
        )
        in_mouth = (self.col >= 0) & np.isin(self.col, self.mouth_js) & (g.side != 0) & (np.abs(y - self.y_m) < 0.03)
        lip_x = _opening_profile(P[:, 0] / self.mouth_hw, 0.3)
        jaw = np.where(in_mouth & (g.side > 0), 0.0, jaw)
        jaw = np.where(in_mouth & (g.side < 0), np.maximum(jaw, lip_x), jaw)
        hang = g.edge_src >= 0
        jaw[hang] = jaw[g.edge_src[hang]]
        jaw[g.joints_idx["mouth_center"]] = 0.5
        jaw[g.part == PART_TEETH_LO] = 1.0
        jaw[np.isin(g.part, (PART_TEETH_UP, PART_EAR, PART_EYE_L, PART_EYE_R))] = 0.0
        root = _smoothstep(-0.11, -0.17, y) * (g.part == PART_SKIN)
        W = np.zeros((self.n, 5))
        W[:, 2] = jaw
        W[:, 0] = (1 - jaw) * root
        W[:, 1] = (1 - jaw) * (1 - root)
        for part, j in ((PART_EYE_L, 3), (PART_EYE_R, 4)):
            m = g.part == part
            W[m] = 0.0
            W[m, j] = 1.0
        return W

    def regressor(self) -> np.ndarray:
        """Joint regressor [5,V]: convex combinations of vertex rings and parts."""
        P, g = self.P, self.geo
        J = np.zeros((5, self.n))
        rows_y = np.array([P[self.vid[i]][:, 1].mean() for i in range(1, N_ROWS)])

        def ring(y_target: float) -> np.ndarray:
            i = 1 + int(np.argmin(np.abs(rows_y - y_target)))
            w = np.zeros(self.n)
            w[self.vid[i]] = 1.0 / N_COLS
            return w

        ears = (g.part == PART_EAR) / max((g.part == PART_EAR).sum(), 1)
        chin = (g.part == PART_TEETH_LO) / max((g.part == PART_TEETH_LO).sum(), 1)
        J[0] = ring(-0.165)
        J[1] = 0.5 * ears + 0.5 * ring(-0.10)
        J[2] = 0.82 * ears + 0.18 * chin
        for part, j in ((PART_EYE_L, 3), (PART_EYE_R, 4)):
            m = g.part == part
            J[j, m] = 1.0 / m.sum()
        return J

    def posedirs(self, W: np.ndarray, J: np.ndarray, samples: int = 96, seed: int = 0) -> np.ndarray:
        """Pose correctives [V,3,36] fitted so that LBS of the neck and the jaw matches a rotation
        whose angle is interpolated per vertex by its skinning weight (no volume collapse)."""
        rng = np.random.default_rng(seed)
        P = self.P
        joints = J @ P
        out = np.zeros((self.n, 3, 9 * 4))
        subtree = {1: [1, 2, 3, 4], 2: [2]}
        for j, limit, main_axis in ((1, 0.6, None), (2, 0.45, 0)):
            aa = rng.normal(size=(samples, 3)) * limit / 2
            if main_axis is not None:  # the jaw mostly opens about x
                aa[:, main_axis] = rng.uniform(-0.1, limit, size=samples)
                aa[:, 1:] *= 0.3
            Rm = _rodrigues(aa)  # [S,3,3]
            omega = W[:, subtree[j]].sum(1)  # [V]
            rel = P - joints[j]
            lbs = P[None] + omega[None, :, None] * np.einsum("sij,vj->svi", Rm - np.eye(3), rel)
            Rw = _rodrigues(aa[:, None, :] * omega[None, :, None])  # [S,V,3,3]
            target = joints[j] + np.einsum("svij,vj->svi", Rw, rel)
            feat = (Rm - np.eye(3)).reshape(samples, 9)
            resid = (target - lbs).reshape(samples, -1)
            A = feat.T @ feat + 1e-8 * np.eye(9)
            B = np.linalg.solve(A, feat.T @ resid)  # [9, V*3]
            out[:, :, 9 * (j - 1) : 9 * j] = B.T.reshape(self.n, 3, 9)
        return out

    def masks(self) -> dict[str, np.ndarray]:
        """Region masks as vertex index arrays."""
        P, g, d = self.P, self.geo, self.d
        x, y, z = P[:, 0], P[:, 1], P[:, 2]
        skin = g.part == PART_SKIN
        ye, ym = d.eye_y, self.y_m
        zc = P[self.vid[self.topo.row_mouth, (self.topo.mouth_cols[0] + self.topo.mouth_cols[1]) // 2], 2]
        lips = skin & (np.abs(x) <= self.mouth_hw + 0.002) & (y > ym - 0.0135) & (y < ym + 0.0105) & (z > zc - 0.012)
        lips |= (g.part == PART_MOUTH) & (g.ring == 1)
        lip_upper = lips & (np.where(g.part == PART_SKIN, g.side, g.side) > 0)
        lip_lower = lips & (g.side < 0)
        front = z > 0.025
        eye_region = skin & front & (np.abs(x) < 0.062) & (y > ye - 0.018) & (y < ye + 0.03)
        eye_region |= g.part == PART_EYE_RIM
        forehead = skin & front & (np.abs(x) < 0.062) & (y >= ye + 0.03) & (y < ye + 0.075)
        eyes_l, eyes_r = g.part == PART_EYE_L, g.part == PART_EYE_R
        nose = skin & (np.abs(x) < 0.022) & (y > ym + 0.015) & (y < ye) & (z > 0.075)
        face = skin & (z > 0.015) & (y > -0.118) & (y < ye + 0.075) & (np.abs(x) < 0.07)
        face |= eye_region | lips
        scalp = skin & ~face & (y > -0.03) & ((y > ye + 0.04) | (z < 0.0))
        neck = skin & ~face & ~scalp & (y < -0.03)
        m = {
            "lips": lips,
            "lip_upper": lip_upper,
            "lip_lower": lip_lower,
            "upper_face": eye_region | forehead,
            "forehead": forehead,
            "eye_region": eye_region,
            "eyes": eyes_l | eyes_r,
            "eye_left": eyes_l,
            "eye_right": eyes_r,
            "nose": nose,
            "face": face,
            "scalp": scalp,
            "neck": neck,
            "ears": g.part == PART_EAR,
            "mouth_interior": g.part == PART_MOUTH,
            "teeth_upper": g.part == PART_TEETH_UP,
            "teeth_lower": g.part == PART_TEETH_LO,
            "eyelid_rims": g.part == PART_EYE_RIM,
        }
        return {k: np.nonzero(v)[0].astype(np.int64) for k, v in m.items()}

    def landmarks(self) -> dict[str, np.ndarray]:
        """Named vertex indices used by tests and metrics (lip midpoints, teeth edge, lid midpoints)."""
        r, js = self.topo.row_mouth, self.mouth_js
        mid = js[np.argmin(np.abs(self.P[self.vid[r, js], 0]))]
        out = {
            "upper_lip_mid": np.array([self.vid[r, mid]]),
            "lower_lip_mid": np.array([self.below[r, mid]]),
            "mouth_corners": np.array([self.vid[r, self.topo.mouth_cols[0]], self.vid[r, self.topo.mouth_cols[1]]]),
        }
        teeth = np.nonzero(self.geo.part == PART_TEETH_UP)[0]
        # front-bottom edge of the upper teeth at the midline: corner 0 of the middle arc samples
        k = TEETH_ARC // 2
        out["upper_teeth_edge"] = teeth[[4 * (k - 1), 4 * k]]
        for name, (j0, j1) in zip(("left", "right"), self.topo.eye_cols, strict=False):
            re = self.topo.row_eye
            m = (j0 + j1) // 2
            out[f"{name}_upper_lid"] = np.array([self.vid[re, m]])
            out[f"{name}_lower_lid"] = np.array([self.below[re, m]])
        return out


def build_builtin_head(design: HeadDesign | None = None) -> dict[str, np.ndarray]:
    """Generate the built-in head; returns FLAME-format arrays plus the project's extensions."""
    base = design or HeadDesign()
    topo = _build_topology(base)
    geo = _build_geometry(base, topo)
    rig = _Rig(base, topo, geo)
    shape = []
    for name, step in SHAPE_STEPS:
        varied = dataclasses.replace(base, **{name: getattr(base, name) + step})
        shape.append(_build_geometry(varied, topo).verts - geo.verts)
    shapedirs = np.concatenate([np.stack(shape, -1), rig.expressions()], axis=-1)
    W = rig.weights()
    J = rig.regressor()
    posedirs = rig.posedirs(W, J)
    out: dict[str, np.ndarray] = {
        "v_template": geo.verts.astype(np.float64),
        "shapedirs": shapedirs.astype(np.float64),
        "posedirs": posedirs.astype(np.float64),
        "J_regressor": J.astype(np.float64),
        "weights": W.astype(np.float64),
        "kintree_table": np.array([[-1, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "f": geo.faces.astype(np.int64),
        "n_shape": np.array(len(SHAPE_NAMES), dtype=np.int64),
        "shape_names": np.array(SHAPE_NAMES),
        "expr_names": np.array(EXPRESSION_NAMES),
        "joint_names": np.array(JOINT_NAMES),
        "name": np.array("l2t-builtin-head"),
    }
    for k, v in rig.masks().items():
        out[f"mask_{k}"] = v
    for k, v in rig.landmarks().items():
        out[f"landmark_{k}"] = v.astype(np.int64)
    return out


def save_builtin_head(path, arrays: dict[str, np.ndarray] | None = None) -> None:
    """Write the built-in head as a compressed .npz (float32 geometry), atomically."""

    arrays = arrays if arrays is not None else build_builtin_head()
    packed = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in arrays.items()}
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **packed)
