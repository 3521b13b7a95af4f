"""Per-episode domain randomisation of a robosuite scene, built on robosuite's own modders.

`headway sim collect --randomize camera,lighting=2,texture=0.3` names what to randomise and how
strongly. Each episode's scene is drawn once, at reset, from that episode's seed (one random stream
per kind, so adding a kind never changes the others' draws): collections stay deterministic and
resumable, and every episode records what was randomised and by how much (`RandomizedScene.record`).

The work is done by `robosuite.utils.mjmod`'s CameraModder, LightingModder, TextureModder and
DynamicsModder, configured the way `robosuite.wrappers.DomainRandomizationWrapper` configures them.
The wrapper itself is not used because, in robosuite 1.5.2 with MuJoCo 3.9: it refuses colour
randomisation unless MuJoCo is 3.1.1; it seeds one RandomState at construction (not per episode);
it re-randomises every step by default; and it wraps attribute access that HeadwayEnv sets on the
robosuite env (`rng`, samplers). The small subclasses below adapt the modders to MuJoCo 3.x
(textures in `tex_data` with `tex_nchannel`, material texture roles, an unnamed light, uploading to
the existing render context) and keep the strength-0 scene identical to the nominal one.

Strengths (a multiple of a base perturbation, or an interpolation weight):

    camera    (0, 4]  1 = each view moved up to +-2 cm per axis, turned up to 5 deg about a random
                      axis, field of view changed up to +-2 deg (extrinsics/intrinsics follow)
    lighting  (0, 4]  1 = robosuite's defaults: position +-10 cm, direction up to 20 deg, specular /
                      ambient / diffuse +-0.1 (colours clipped to [0, 1]; lights never switched off)
    texture   (0, 1]  weight of a random pattern (flat, checker, noise, gradient) blended into the
                      arena's surfaces: table, legs, floor, walls, sky
    color     (0, 1]  weight of a random colour blended into the robot's visual geoms
    dynamics  (0, 4]  1 = robosuite's default ratios for friction, contact solver, mass, inertia,
                      joint damping / armature / friction loss / stiffness (body poses untouched)

Task objects (the cubes, the can) keep their looks: their colour is what the task text names.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from headway.errors import HeadwayError, unknown_name

# kind -> (max strength, what the strength means); the order is the order kinds are applied in
KINDS: dict[str, tuple[float, str]] = {
    "camera": (4.0, "multiple of +-2 cm / 5 deg / +-2 deg fovy"),
    "lighting": (4.0, "multiple of robosuite's lighting perturbation"),
    "texture": (1.0, "blend weight of a random surface pattern"),
    "color": (1.0, "blend weight of a random robot colour"),
    "dynamics": (4.0, "multiple of robosuite's dynamics perturbation ratios"),
}
CAMERA_POSITION_M = 0.02
CAMERA_ROTATION_RAD = 0.087  # 5 degrees, robosuite's default
CAMERA_FOVY_DEG = 2.0
SURFACE_PREFIXES = ("table", "floor", "wall")  # the arena's textured geoms; task objects keep their looks
ROBOT_PREFIXES = ("robot", "gripper", "fixed_mount")  # the arm, its gripper and its mount
MILD = {"camera": 0.5, "lighting": 0.5, "texture": 0.15, "color": 0.15}  # a mild preset


def parse_randomization(text: str | None) -> dict[str, float]:
    """'camera,lighting=2,texture=0.3' -> {'camera': 1.0, 'lighting': 2.0, 'texture': 0.3}.

    An empty string or 'none' means no randomisation; 'mild' is a preset. Raises HeadwayError on an
    unknown kind (listing the valid ones), a repeated kind, or a strength outside its range.
    """
    if text is None or text.strip().lower() in ("", "none", "off"):
        return {}
    if text.strip().lower() == "mild":
        return dict(MILD)
    spec: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if name not in KINDS:
            raise unknown_name("randomisation", name, tuple(KINDS) + ("mild", "none"))
        if name in spec:
            raise HeadwayError(f"--randomize names {name!r} twice; give each kind once")
        if sep:
            try:
                strength = float(value)
            except ValueError:
                raise HeadwayError(f"--randomize strength {value!r} for {name!r} is not a number") from None
        else:
            strength = 1.0
        spec[name] = strength
    return validate_randomization(spec)


def validate_randomization(spec: dict[str, float]) -> dict[str, float]:
    """Check kinds and strengths; return them in the canonical order."""
    for name, strength in spec.items():
        if name not in KINDS:
            raise unknown_name("randomisation", name, tuple(KINDS))
        top, meaning = KINDS[name]
        if not (np.isfinite(strength) and 0.0 < strength <= top):
            raise HeadwayError(
                f"--randomize strength of {name} must be in (0, {top:g}] ({meaning}), got {strength:g}; "
                f"leave {name} out to keep it nominal"
            )
    return {name: float(spec[name]) for name in KINDS if name in spec}


def format_randomization(spec: dict[str, float]) -> str:
    return ",".join(f"{name}={strength:g}" for name, strength in spec.items()) or "none"


# -- robosuite modders adapted to MuJoCo 3.x -------------------------------------------------------


class _Texture:
    """mjmod.Texture over MuJoCo 3.x's `tex_data` (any channel count)."""

    __slots__ = ["id", "model", "height", "width", "channels", "adr"]

    def __init__(self, model, tex_id: int) -> None:
        self.id = tex_id
        self.model = model
        self.height = int(model.tex_height[tex_id])
        self.width = int(model.tex_width[tex_id])
        self.channels = int(model.tex_nchannel[tex_id])
        self.adr = int(model.tex_adr[tex_id])

    @property
    def bitmap(self) -> np.ndarray:
        size = self.height * self.width * self.channels
        data = self.model.tex_data[self.adr : self.adr + size].reshape(self.height, self.width, self.channels)
        return data[..., :3]


def _modder_classes():
    import mujoco
    from robosuite.utils import mjmod

    rgb_role = int(mujoco.mjtTextureRole.mjTEXROLE_RGB)

    class TextureModder(mjmod.TextureModder):
        """Texture bitmaps in tex_data, the RGB texture role, uploads to the env's own render context."""

        def save_defaults(self):
            self.textures = [_Texture(self.model._model, i) for i in range(self.model.ntex)]
            self._default_texture_bitmaps = [np.array(t.bitmap) for t in self.textures]
            self._cache_checker_matrices()
            self._defaults = {k: {} for k in self.geom_names}
            if self.randomize_skybox:
                self._defaults["skybox"] = {}
            for name in self.geom_names:
                if self._check_geom_for_texture(name):
                    self._defaults[name]["texture"] = self._default_texture_bitmaps[self._name_to_tex_id(name)]
                    self._defaults[name]["material"] = self.get_material(name)
                else:
                    self._defaults[name]["rgb"] = np.array(self.get_geom_rgb(name))
            if self.randomize_skybox:
                self._defaults["skybox"]["texture"] = self._default_texture_bitmaps[self._name_to_tex_id("skybox")]

        def get_geom_rgb(self, name):
            geom_id = self.model.geom_name2id(name)
            mat_id = self.model.geom_matid[geom_id]
            return self.model.mat_rgba[mat_id, :3] if mat_id >= 0 else self.model.geom_rgba[geom_id, :3]

        def set_geom_rgb(self, name, rgb):
            """A geom with a material shows the material's colour, so that is the one to change."""
            geom_id = self.model.geom_name2id(name)
            mat_id = self.model.geom_matid[geom_id]
            if mat_id >= 0:
                self.model.mat_rgba[mat_id, :3] = rgb
            else:
                self.model.geom_rgba[geom_id, :3] = rgb

        def whiten_materials(self):
            """Keep material colours: strength 0 must look exactly like the nominal scene."""

        def set_texture(self, name, bitmap, perturb=False):
            if perturb:
                bitmap = (1.0 - self.local_rgb_interpolation) * self._defaults[name]["texture"] + (
                    self.local_rgb_interpolation * bitmap
                )
            self.get_texture(name).bitmap[:] = np.clip(np.rint(bitmap), 0, 255).astype(np.uint8)
            self.upload_texture(name)

        def upload_texture(self, name, device_id=0):
            """Deferred: SceneRandomizer uploads each changed texture once, to the env's render context."""
            self.pending_uploads = getattr(self, "pending_uploads", set()) | {self.get_texture(name).id}

        def _check_geom_for_texture(self, name):
            mat_id = self.model.geom_matid[self.model.geom_name2id(name)]
            return bool(mat_id >= 0 and self.model.mat_texid[mat_id][rgb_role] >= 0)

        def _name_to_tex_id(self, name):
            if name == "skybox":
                skyboxes = [i for i in range(self.model.ntex) if self.model.tex_type[i] == mujoco.mjtTexture.mjTEXTURE_SKYBOX]
                assert skyboxes, "no skybox texture"
                return skyboxes[-1]
            assert self._check_geom_for_texture(name)
            return int(self.model.mat_texid[self.model.geom_matid[self.model.geom_name2id(name)]][rgb_role])

    class LightingModder(mjmod.LightingModder):
        """Lights by index (robosuite's arena light has no name); colours clipped to [0, 1]."""

        def get_lightid(self, name):
            return int(name)

        def set_specular(self, name, value):
            super().set_specular(name, np.clip(value, 0.0, 1.0))

        def set_ambient(self, name, value):
            super().set_ambient(name, np.clip(value, 0.0, 1.0))

        def set_diffuse(self, name, value):
            super().set_diffuse(name, np.clip(value, 0.0, 1.0))

    class DynamicsModder(mjmod.DynamicsModder):
        """robosuite's DynamicsModder draws from the global numpy stream; give it this episode's."""

        def randomize(self):
            saved = np.random.get_state()
            np.random.set_state(self.random_state.get_state())
            try:
                super().randomize()
            finally:
                np.random.set_state(saved)

    return mjmod.CameraModder, LightingModder, TextureModder, DynamicsModder


# -- the scene randomiser ---------------------------------------------------------------------------

_SNAPSHOT_FIELDS = (
    "cam_pos", "cam_quat", "cam_fovy",
    "light_pos", "light_dir", "light_specular", "light_ambient", "light_diffuse", "light_active",
    "geom_rgba", "mat_rgba", "mat_reflectance", "mat_shininess", "mat_specular", "tex_data",
    "body_pos", "body_quat", "body_mass", "body_inertia", "geom_friction", "geom_solref", "geom_solimp",
    "jnt_stiffness", "dof_frictionloss", "dof_damping", "dof_armature",
)


def _episode_random_state(seed: int, kind: str) -> np.random.RandomState:
    entropy = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 26, list(KINDS).index(kind)])
    return np.random.RandomState(int(entropy.generate_state(1)[0]))


def _rotation_deg(q0: np.ndarray, q1: np.ndarray) -> float:
    dot = abs(float(np.dot(q0 / np.linalg.norm(q0), q1 / np.linalg.norm(q1))))
    return float(np.degrees(2 * np.arccos(min(dot, 1.0))))


@dataclass
class RandomizedScene:
    """The scene an episode was collected in: kind -> strength, and what each kind changed."""

    strengths: dict[str, float]
    record: dict


class SceneRandomizer:
    """Applies `spec` to a robosuite env's model once per episode, from the episode's seed."""

    def __init__(self, robosuite_env, spec: dict[str, float], views: tuple[str, ...]) -> None:
        self.env = robosuite_env
        self.spec = validate_randomization(dict(spec))
        self.views = tuple(views)
        sim = robosuite_env.sim
        model = sim.model._model
        self._defaults = {name: np.array(getattr(model, name)) for name in _SNAPSHOT_FIELDS}
        self._opt = (float(model.opt.density), float(model.opt.viscosity))
        self.modders: dict[str, object] = {}
        self._changed_textures: set[int] = set()
        camera_cls, light_cls, texture_cls, dynamics_cls = _modder_classes()
        names = [n for n in sim.model.geom_names if n]
        group = lambda n: int(model.geom_group[sim.model.geom_name2id(n)])  # noqa: E731
        probe = texture_cls(sim, random_state=np.random.RandomState(0), geom_names=[], randomize_skybox=False)
        textured = [n for n in names if probe._check_geom_for_texture(n)]
        self.surface_geoms = [n for n in textured if n.startswith(SURFACE_PREFIXES)]
        self.color_geoms = [n for n in names if n.startswith(ROBOT_PREFIXES) and group(n) == 1 and n not in textured]
        for kind, strength in self.spec.items():
            rs = np.random.RandomState(0)  # replaced per episode
            if kind == "camera":
                modder = camera_cls(
                    sim, random_state=rs, camera_names=list(self.views) or ["agentview"],
                    position_perturbation_size=CAMERA_POSITION_M * strength,
                    rotation_perturbation_size=CAMERA_ROTATION_RAD * strength,
                    fovy_perturbation_size=CAMERA_FOVY_DEG * strength,
                )
            elif kind == "lighting":
                modder = light_cls(
                    sim, random_state=rs, light_names=list(range(model.nlight)), randomize_active=False,
                    position_perturbation_size=0.1 * strength, direction_perturbation_size=0.35 * strength,
                    specular_perturbation_size=0.1 * strength, ambient_perturbation_size=0.1 * strength,
                    diffuse_perturbation_size=0.1 * strength,
                )
            elif kind == "texture":
                modder = texture_cls(
                    sim, random_state=rs, geom_names=self.surface_geoms, randomize_local=True,
                    randomize_material=False, local_rgb_interpolation=strength, randomize_skybox=True,
                )
            elif kind == "color":
                modder = texture_cls(
                    sim, random_state=rs, geom_names=self.color_geoms, randomize_local=True,
                    randomize_material=False, local_rgb_interpolation=strength, randomize_skybox=False,
                )
            else:
                from robosuite.wrappers.domain_randomization_wrapper import DEFAULT_DYNAMICS_ARGS

                args = copy.deepcopy(DEFAULT_DYNAMICS_ARGS)
                args.update(randomize_position=False, randomize_quaternion=False, randomize_density=False, randomize_viscosity=False)
                for key in list(args):
                    if key.endswith(("_ratio", "_size")):
                        args[key] = args[key] * strength
                modder = dynamics_cls(sim, random_state=rs, **args)
            self.modders[kind] = modder

    def restore(self) -> None:
        """Put every field a modder may change back to the nominal scene."""
        model = self.env.sim.model._model
        for name, value in self._defaults.items():
            getattr(model, name)[...] = value
        model.opt.density, model.opt.viscosity = self._opt

    def apply(self, seed: int) -> RandomizedScene:
        """Restore the nominal scene, then draw this episode's from `seed`; returns what changed."""
        self.restore()
        changed: set[int] = set()
        for kind, modder in self.modders.items():
            modder.random_state = _episode_random_state(seed, kind)
            modder.pending_uploads = set()
            modder.randomize()
            changed |= modder.pending_uploads
        # textures go to the GPU once each: this episode's changes and the last episode's, now restored
        context = getattr(self.env.sim, "_render_context_offscreen", None)
        if context is not None:  # else the context uploads every texture when it is created
            for tex_id in sorted(changed | self._changed_textures):
                context.upload_texture(tex_id)
        self._changed_textures = changed
        self.env.sim.forward()  # camera poses (data.cam_xpos/xmat) follow the modified model
        return RandomizedScene(dict(self.spec), self._record())

    def _record(self) -> dict:
        model = self.env.sim.model._model
        sim_model = self.env.sim.model
        d = self._defaults
        record: dict = {}
        for kind, strength in self.spec.items():
            entry: dict = {"strength": strength}
            if kind == "camera":
                for view in self.modders[kind].camera_names:
                    i = sim_model.camera_name2id(view)
                    entry[view] = {
                        "position_offset_m": np.round(model.cam_pos[i] - d["cam_pos"][i], 5).tolist(),
                        "rotation_deg": round(_rotation_deg(d["cam_quat"][i], model.cam_quat[i]), 3),
                        "fovy_offset_deg": round(float(model.cam_fovy[i] - d["cam_fovy"][i]), 3),
                    }
            elif kind == "lighting":
                entry["lights"] = [
                    {
                        "position_offset_m": round(float(np.linalg.norm(model.light_pos[i] - d["light_pos"][i])), 4),
                        "direction_change_deg": round(float(np.degrees(np.arccos(np.clip(
                            np.dot(model.light_dir[i], d["light_dir"][i])
                            / (np.linalg.norm(model.light_dir[i]) * np.linalg.norm(d["light_dir"][i]) + 1e-12), -1, 1)))), 3),
                        "diffuse": np.round(model.light_diffuse[i], 4).tolist(),
                        "ambient": np.round(model.light_ambient[i], 4).tolist(),
                        "specular": np.round(model.light_specular[i], 4).tolist(),
                    }
                    for i in range(model.nlight)
                ]
            elif kind == "texture":
                change = np.abs(model.tex_data.astype(np.int16) - d["tex_data"].astype(np.int16))
                entry["surfaces"] = len(self.surface_geoms)
                entry["mean_abs_change"] = round(float(change.mean()) / 255.0, 5)
            elif kind == "color":
                ids = [sim_model.geom_name2id(n) for n in self.color_geoms]
                mats = sorted({int(model.geom_matid[i]) for i in ids} - {-1})
                plain = [i for i in ids if model.geom_matid[i] < 0]
                change = np.concatenate([
                    np.abs(model.mat_rgba[mats, :3] - d["mat_rgba"][mats, :3]).ravel(),
                    np.abs(model.geom_rgba[plain, :3] - d["geom_rgba"][plain, :3]).ravel(),
                ])
                entry["geoms"] = len(ids)
                entry["mean_abs_change"] = round(float(change.mean()), 5)
            else:
                def relative(name: str) -> float:
                    base = d[name]
                    mask = np.abs(base) > 1e-9
                    return round(float(np.mean(np.abs(getattr(model, name)[mask] / base[mask] - 1.0))) if mask.any() else 0.0, 5)

                entry["mean_relative_change"] = {
                    name: relative(name) for name in ("geom_friction", "body_mass", "body_inertia", "dof_damping", "dof_armature")
                }
            record[kind] = entry
        return record
