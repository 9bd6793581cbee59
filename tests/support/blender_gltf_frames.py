"""Run inside Blender: import a .glb, evaluate the animated mesh at some frames, save the vertices.

blender -b --factory-startup --python blender_gltf_frames.py -- IN.glb OUT.npz FPS FRAME [FRAME ...]

Writes ``vertices [N, V, 3]`` (glTF axes: Blender's Z-up converted back to Y-up), ``rest [V, 3]`` (the
imported mesh's own vertex coordinates, same conversion) and the animation's frame range.
"""

import sys

import bpy
import numpy as np

argv = sys.argv[sys.argv.index("--") + 1 :]
src, dst, fps, frames = argv[0], argv[1], int(argv[2]), [int(f) for f in argv[3:]]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.fps, scene.render.fps_base = fps, 1.0
bpy.ops.import_scene.gltf(
    filepath=src, import_shading="SMOOTH"
)  # NORMALS mode trips on numpy>=1.24 (np.bool) in Blender 3.4
mesh_obj = next(o for o in bpy.data.objects if o.type == "MESH")
ranges = [a.frame_range[:] for a in bpy.data.actions]
scene.frame_start = int(round(min(r[0] for r in ranges)))
scene.frame_end = int(round(max(r[1] for r in ranges)))


def coords(mesh) -> np.ndarray:
    out = np.empty(len(mesh.vertices) * 3)
    mesh.vertices.foreach_get("co", out)
    xyz = out.reshape(-1, 3)
    return np.stack([xyz[:, 0], xyz[:, 2], -xyz[:, 1]], axis=1)  # Blender (x, y, z) = glTF (x, -z, y)


rest = coords(mesh_obj.data)
verts = []
for f in frames:
    scene.frame_set(f)
    dg = bpy.context.evaluated_depsgraph_get()
    ev = mesh_obj.evaluated_get(dg)
    m = ev.to_mesh()
    world = np.array(ev.matrix_world)
    v = coords(m)
    ev.to_mesh_clear()
    # apply the object's world matrix (Blender space), then convert
    b = np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)
    b = b @ world[:3, :3].T + world[:3, 3]
    verts.append(np.stack([b[:, 0], b[:, 2], -b[:, 1]], axis=1))
np.savez(
    dst,
    vertices=np.array(verts),
    rest=rest,
    frames=np.array(frames),
    frame_range=np.array([scene.frame_start, scene.frame_end]),
    action_range=np.array([min(r[0] for r in ranges), max(r[1] for r in ranges)]),
)
print("BLENDER_OK", len(rest), len(verts))
