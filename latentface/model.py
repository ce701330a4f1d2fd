"""`LatentFace`: the public model — encode, disentangle, render, features, and weight I/O."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from latentface import hub
from latentface.card import derived_card, model_card
from latentface.config import LatentFaceConfig
from latentface.diffusion import NoiseSchedule, sample
from latentface.errors import WeightsError
from latentface.nets.autoencoder import ConfidenceNet, EncoderDecoder, PlainEncoder
from latentface.nets.rdm import ConditionalDenoiser
from latentface.options import FEATURE_PROTOCOLS, FeatureProtocol, Renderer, Sampler, View, check_option
from latentface.outputs import Disentangled, FaceCodes, Latents, Rendering
from latentface.preprocess import MIN_IMAGE_SIDE, Images, ImageTransform, create_transform, to_batch
from latentface.render import codes as codes_module
from latentface.render.backends import get_rasterizer
from latentface.render.codes import Scalars
from latentface.render.depth import canonical_depth
from latentface.render.formation import form_image

PROTOCOLS = FEATURE_PROTOCOLS
"""The protocols of `LatentFace.features` (`latentface.options.FEATURE_PROTOCOLS`)."""


def _check_image_size(model: LatentFace, folder: os.PathLike) -> None:
    """Raise `WeightsError` when the weights in `folder` fit the model's config only with another ``image_size``
    (sizes above 64 add shared stride-2 blocks: the tensors of 64 px and of larger sizes differ)."""
    found = hub.tensor_shapes(folder)
    cfg = model.config
    if found == {k: tuple(v.shape) for k, v in model.state_dict().items()}:
        return
    other_size = 128 if cfg.image_size == 64 else 64
    with torch.device("meta"):
        other = LatentFace(dataclasses.replace(cfg, image_size=other_size))
    if found == {k: tuple(v.shape) for k, v in other.state_dict().items()}:
        made_for = "64" if other_size == 64 else "128 or larger (64 * 2**k, k >= 1)"
        raise WeightsError(
            f"the weights in {os.fspath(folder)!r} were made for image_size {made_for}, but its config.json says "
            f"image_size {cfg.image_size}: correct image_size in config.json"
        )


class LatentFace(nn.Module):
    """LatentFace model: Stage-1 3D-aware autoencoder plus the Stage-2 representation diffusion model.

    As a module, ``model(batch)`` (`forward`) encodes a preprocessed batch, like `encode_batch`; `transform`
    preprocesses single images for DataLoader workers.

    Args:
        config: the architecture and constants; defaults to the released model's.
        renderer: rasterizer used by `render`: ``"native"`` (pure PyTorch) or ``"pytorch3d"`` (when installed);
            can be changed later through the ``renderer`` attribute.

    Attributes:
        name_or_path: what `from_pretrained` loaded (None for a model built here).
        model_card: the card the weights were loaded with (None for a model built here).

    Example:
        >>> model = LatentFace.from_pretrained("path/to/weights")  # doctest: +SKIP
        >>> feats = model.features(images, protocol="fer")  # (B, 4 * model.config.latent_dim)  # doctest: +SKIP
    """

    def __init__(self, config: LatentFaceConfig | None = None, *, renderer: Renderer = "native") -> None:
        super().__init__()
        cfg = config or LatentFaceConfig()
        self.config = cfg
        nf, zdim, r = cfg.ae_width, cfg.latent_dim, cfg.repeat
        # Module names are the weights' keys and follow the official networks (netA, netD, netL, netV, netC,
        # netEA, netED): albedo_net encodes the texture latent and decodes the albedo map, depth_net the shape
        # latent and the depth map, view_net gives the pose code; albedo_rdm / depth_rdm sample the texture /
        # shape identity.
        self.albedo_net = EncoderDecoder(3, 3, nf, zdim, r, activation=nn.Tanh)
        self.depth_net = EncoderDecoder(3, 1, nf, zdim, r, activation=None)
        self.light_net = PlainEncoder(3, 4, cfg.light_pose_width, r)
        self.view_net = PlainEncoder(3, 6, cfg.light_pose_width, r)
        self.confidence_net = ConfidenceNet(3, nf, cfg.confidence_latent_dim, r)
        self.albedo_rdm: ConditionalDenoiser | None = None
        self.depth_rdm: ConditionalDenoiser | None = None
        if cfg.rdm_width is not None:
            self.albedo_rdm = ConditionalDenoiser(zdim, cfg.rdm_width, cfg.rdm_layers_per_block, cfg.rdm_norm_groups)
            self.depth_rdm = ConditionalDenoiser(zdim, cfg.rdm_width, cfg.rdm_layers_per_block, cfg.rdm_norm_groups)
        self.schedule = NoiseSchedule(cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end)
        self.model_card: str | None = None
        self.name_or_path: str | None = None
        self._loaded_digest: str | None = None  # `hub.weights_digest` when loaded: tells a changed model apart
        self.renderer = renderer

    @property
    def renderer(self) -> Renderer:
        """Rasterizer backend of `render`: ``"native"`` or ``"pytorch3d"``."""
        return self._renderer

    @renderer.setter
    def renderer(self, name: Renderer) -> None:
        get_rasterizer(name)  # unknown name -> ValueError, PyTorch3D missing -> ImportError
        self._renderer = name

    @property
    def device(self) -> torch.device:
        """The device every parameter is on.

        Raises:
            RuntimeError: the parameters are on several devices (move the whole model with ``model.to(device)``).
        """
        devices = {p.device for p in self.parameters()}
        if len(devices) != 1:
            raise RuntimeError(f"LatentFace parameters are on several devices ({', '.join(sorted(map(str, devices)))})"
                               "; move the whole model with model.to(device)")
        return devices.pop()

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of every floating parameter.

        Raises:
            RuntimeError: the floating parameters have several dtypes (cast the whole model with ``model.to(dtype)``).
        """
        dtypes = {p.dtype for p in self.parameters() if p.is_floating_point()}
        if len(dtypes) != 1:
            raise RuntimeError(f"LatentFace parameters have several dtypes ({', '.join(sorted(map(str, dtypes)))})"
                               "; cast the whole model with model.to(dtype)")
        return dtypes.pop()

    @property
    def transform(self) -> ImageTransform:
        """Picklable callable turning one image into the (3, S, S) tensor this model takes (its saved
        preprocessing; `latentface.preprocess.create_transform`). Stack its outputs and call the model."""
        return create_transform(self.config)

    def num_features(self, protocol: FeatureProtocol = "fer") -> int:
        """Size of `features` for `protocol`: 4 latents (fer), twice that with the flipped image (verification)."""
        check_option("protocol", protocol, FEATURE_PROTOCOLS)
        return 4 * self.config.latent_dim * (2 if protocol == "verification" else 1)

    @property
    def has_rdm(self) -> bool:
        """Whether these weights include the Stage-2 RDM (needed by `disentangle` and `features`)."""
        return self.albedo_rdm is not None and self.depth_rdm is not None

    def require_rdm(self, purpose: str) -> None:
        """Raise `WeightsError` saying what `purpose` needs and how to get it, unless the model has the RDM.

        Args:
            purpose: what the caller is about to do, e.g. ``"disentangle"``.
        """
        if self.has_rdm:
            return
        which = f" ({self.name_or_path})" if self.name_or_path else ""
        raise WeightsError(
            f"{purpose} needs the Stage-2 RDM, and these weights{which} have no RDM (Stage 1 only: encode, render "
            "and reconstruct work). Load weights that have it: 'latentface-official', made once from the authors' "
            "diffusion_64.pth with `latentface download latentface-official --from diffusion_64.pth` (a path or a "
            "URL), or the demo weights 'synthfaces-tiny'"
        )

    def preprocess(self, images: Images, *, name: str | None = None) -> Tensor:
        """Images -> (B, 3, S, S) batch in [0, 1] on the model's device (see `latentface.preprocess`).

        Images under `latentface.preprocess.MIN_IMAGE_SIDE` (16) pixels on a side are refused, as by every entry
        point. `name`: how errors name the input (`latentface.preprocess.to_batch`).

        Raises:
            InvalidImageError: naming the bad input.
        """
        pp = self.config.preprocess
        batch = to_batch(images, self.config.image_size, pp.resample, pp.resize_mode, min_side=MIN_IMAGE_SIDE,
                         name=name)
        return batch.to(self.device, self.dtype)

    def _as_input(self, images: Images) -> Tensor:
        return self.preprocess(images) * 2 - 1

    def encode(self, images: Images) -> FaceCodes:
        """Stage-1 codes of face images.

        Args:
            images: PIL images, numpy HWC arrays, tensors (B)CHW in [0, 1], file paths, or lists of these.

        Returns:
            `FaceCodes` with texture and shape latents (B, ``config.latent_dim``), light (B, 4) and pose (B, 6).
        """
        return self(self.preprocess(images))

    def encode_batch(self, batch: Tensor) -> FaceCodes:
        """`encode` for a preprocessed (B, 3, S, S) batch in [0, 1] on the model's device; differentiable.
        The same as calling the model (`forward`)."""
        return self(batch)

    def forward(self, batch: Tensor) -> FaceCodes:
        """Stage-1 codes of a preprocessed batch, so that ``model(batch)``, forward hooks, `torch.compile`,
        `torch.export` and DistributedDataParallel work as with any module (see the README's "PyTorch conventions").

        Args:
            batch: (B, 3, S, S) images in [0, 1] on the model's device (e.g. stacked outputs of `transform`).

        Returns:
            `FaceCodes` (a registered pytree node: flattens to its tensors).
        """
        x = batch * 2 - 1
        return FaceCodes(
            texture=self.albedo_net.forward_features(x),
            shape=self.depth_net.forward_features(x),
            light=self.light_net(x),
            pose=self.view_net(x),
        )

    def _noise(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        device = generator.device if generator is not None else torch.device("cpu")
        return torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)

    def disentangle(
        self,
        codes: FaceCodes | Latents,
        *,
        noise: Latents | None = None,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        sampler: Sampler | None = None,
    ) -> Disentangled:
        """Split texture and shape latents into identity (RDM sample) and expression (the rest).

        Args:
            codes: output of `encode` (or `Latents`).
            noise: explicit start noise for both denoisers; drawn when omitted (texture first, then shape).
            generator: random source for the start noise; the global CPU generator when omitted.
            steps: DDIM steps (default from the config, 5).
            sampler: ``"official"`` (released behaviour) or ``"ddim"`` (textbook); default from the config.

        Returns:
            `Disentangled` with ``identity`` and ``expression`` `Latents`.
        """
        self.require_rdm("disentangle")
        assert self.albedo_rdm is not None and self.depth_rdm is not None
        cfg = self.config
        steps = cfg.sampling_steps if steps is None else steps
        sampler = cfg.sampler if sampler is None else sampler
        if noise is None:
            noise = Latents(texture=self._noise(codes.texture, generator), shape=self._noise(codes.shape, generator))
        elif noise.texture.shape != codes.texture.shape or noise.shape.shape != codes.shape.shape:
            raise ValueError(
                f"noise shapes {tuple(noise.texture.shape)}/{tuple(noise.shape.shape)} do not match the latents "
                f"{tuple(codes.texture.shape)}/{tuple(codes.shape.shape)}"
            )
        identity = {}
        for name, rdm in (("texture", self.albedo_rdm), ("shape", self.depth_rdm)):
            z = getattr(codes, name)
            start = getattr(noise, name).to(z.device, z.dtype)
            identity[name] = sample(lambda x_t, t, z=z, rdm=rdm: rdm(x_t, z, t), start, self.schedule, steps, sampler,
                                    cfg.clip_sample)
        ident = Latents(**identity)
        return Disentangled(identity=ident, expression=Latents(texture=codes.texture - ident.texture,
                                                               shape=codes.shape - ident.shape))

    def render(
        self,
        codes: FaceCodes,
        view: View | Tensor | None = "input",
        light: Tensor | None = None,
        *,
        flip: bool = False,
    ) -> Rendering:
        """Maps decoded from the codes, in the canonical view and optionally a posed one (differentiable).

        Args:
            codes: output of `encode`.
            view: ``"input"`` (the pose in the codes: Unsup3D's reconstruction), ``"frontal"`` (zero pose), a
                (B, 6) or (6,) pose code in the units of `FaceCodes.pose` (see `pose_code`), or None for the
                canonical maps only.
            light: relight with a (B, 4) or (4,) light code in the units of `FaceCodes.light` (see `light_code`)
                instead of the codes' own light.
            flip: also render Unsup3D's flipped branch (the batch doubles; see `latentface.render.formation`).

        Returns:
            `Rendering` with albedo, canonical depth and normals, shading, the canonical image
            ``albedo * shading`` and, unless `view` is None, the posed image, depth, normals and mask.
        """
        albedo, depth = self.decode(codes)
        return self._form(albedo, depth, codes, view, light, flip)

    def _form(self, albedo: Tensor, depth: Tensor, codes: FaceCodes, view: View | Tensor | None,
              light: Tensor | None, flip: bool = False) -> Rendering:
        """`render` from already decoded canonical maps."""
        light = codes.light if light is None else self._code_like(light, codes.light, "light")
        if isinstance(view, Tensor):
            pose = self._code_like(view, codes.pose, "view")
        else:
            pose = None if view is None else self._pose_code(codes, view)
        return form_image(albedo, depth, light, pose, self.config, flip=flip, renderer=self.renderer)

    def decode(self, codes: FaceCodes | Latents) -> tuple[Tensor, Tensor]:
        """Canonical albedo map (B, 3, H, W) in [0, 1] units of the texture latent, and canonical depth map
        (B, H, W) of the shape latent."""
        cfg = self.config
        albedo = self.albedo_net.decode(codes.texture) / 2 + 0.5
        depth = canonical_depth(
            self.depth_net.decode(codes.shape)[:, 0], cfg.min_depth, cfg.max_depth, cfg.resolved_border_depth,
            cfg.border_columns,
        )
        return albedo, depth

    def render_views(self, codes: FaceCodes, views: Tensor, light: Tensor | None = None) -> list[Rendering]:
        """Render every face under each of several poses, e.g. a yaw sweep from `pose_code` (decodes once).

        Args:
            codes: output of `encode` (B faces).
            views: (V, 6) pose codes.
            light: optional light code, as in `render`.

        Returns:
            V renderings of the B faces, one per pose, in the order of `views`.
        """
        if views.ndim != 2 or views.shape[1] != codes.pose.shape[1]:
            raise ValueError(f"views must have shape (V, {codes.pose.shape[1]}), got {tuple(views.shape)}")
        albedo, depth = self.decode(codes)
        return [self._form(albedo, depth, codes, v, light) for v in views]

    def pose_code(self, yaw: Scalars = 0.0, pitch: Scalars = 0.0, roll: Scalars = 0.0, shift_x: Scalars = 0.0,
                  shift_y: Scalars = 0.0, shift_z: Scalars = 0.0) -> Tensor:
        """Pose code from degrees and camera units: (6,), or (N, 6) for sequences (`latentface.render.codes`)."""
        return codes_module.pose_code(self.config, yaw, pitch, roll, shift_x, shift_y, shift_z)

    def light_code(self, ambient: Scalars = 0.5, diffuse: Scalars = 0.5,
                   direction: Sequence[float] | Tensor = (0.0, 0.0, 1.0)) -> Tensor:
        """Light code from strengths and a direction (see `latentface.render.codes.light_code`)."""
        return codes_module.light_code(self.config, ambient, diffuse, direction)

    @staticmethod
    def _code_like(code: Tensor, like: Tensor, name: str) -> Tensor:
        """A per-item code (B, N), or one (N,) code for the whole batch, shaped and typed like `like`."""
        if code.shape not in ((like.shape[1],), like.shape):
            raise ValueError(
                f"{name} must have shape ({like.shape[1]},) or {tuple(like.shape)}, got {tuple(code.shape)}"
            )
        return code.to(like).expand_as(like)

    @staticmethod
    def _pose_code(codes: FaceCodes, view: View) -> Tensor:
        if view == "input":
            return codes.pose
        if view == "frontal":
            return torch.zeros_like(codes.pose)
        raise ValueError(f"view must be 'input', 'frontal', a pose tensor or None, got {view!r}")

    def _latents(self, x: Tensor) -> Latents:
        """Texture and shape latents only (what `features` needs; light and pose are skipped)."""
        return Latents(texture=self.albedo_net.forward_features(x), shape=self.depth_net.forward_features(x))

    @torch.no_grad()
    def features(
        self,
        images: Images,
        protocol: FeatureProtocol = "fer",
        *,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        sampler: Sampler | None = None,
    ) -> Tensor:
        """The paper's downstream features, as released.

        ``"fer"`` (B, 4 D): [texture expression, texture, shape expression, shape].
        ``"verification"`` (B, 8 D): [texture identity, texture, shape identity, shape] of the image, then the
        same for its horizontal flip. D is ``config.latent_dim`` (256 for the released model: 1024-d and 2048-d
        features; `num_features` gives the size).

        Args:
            images: any input accepted by `encode`.
            protocol: ``"fer"`` or ``"verification"``.
            generator: random source of the RDM start noise (same generator state, same features).
            steps: DDIM steps (default from the config).
            sampler: ``"official"`` or ``"ddim"`` (default from the config).
        """
        check_option("protocol", protocol, FEATURE_PROTOCOLS)
        self.require_rdm(f"features(protocol={protocol!r})")
        x = self._as_input(images)
        b = len(x)
        if protocol == "verification":
            x = torch.cat([x, torch.flip(x, dims=[3])])  # one pass over image and flip
        z = self._latents(x)
        # Noise in the released order: per pass (image, then flip) texture before shape.
        draws = [[self._noise(m[i : i + b], generator) for m in (z.texture, z.shape)] for i in range(0, len(x), b)]
        noise = Latents(texture=torch.cat([d[0] for d in draws]), shape=torch.cat([d[1] for d in draws]))
        parts = self.disentangle(z, noise=noise, steps=steps, sampler=sampler)
        first = parts.expression if protocol == "fer" else parts.identity
        feats = torch.cat([first.texture, z.texture, first.shape, z.shape], dim=1)
        return torch.cat(feats.split(b), dim=1)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        device: torch.device | str | None = None,
        renderer: Renderer = "native",
    ) -> LatentFace:
        """Load weights by name (`latentface.list_pretrained`), local folder, or Hub id
        ``[hf-hub:]org/name[@revision]``.

        Args:
            name_or_path: what to load (see `latentface.hub.resolve`). Registered names (e.g. ``"unsup3d-celeba"``)
                are downloaded, checked and converted on first use, then load from the cache offline.
            revision: Hub branch, tag or commit (also accepted as ``@revision`` in the name).
            cache_dir: Hub cache folder (default: huggingface_hub's), or for registered names the cache of
                converted weights (default `latentface.pretrained.cache_root`).
            local_files_only: never touch the network; use the caches only.
            device: where to put the model (default CPU).
            renderer: rasterizer used by `render`, ``"native"`` or ``"pytorch3d"``.

        Returns:
            The model in eval mode.

        Raises:
            WeightsError: the weights cannot be found or do not match the configuration (names the tensor).
        """
        folder = hub.resolve(name_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
        config = hub.load_model_config(folder)
        with torch.device("meta"):  # no random initialisation: every parameter comes from the file
            model = cls(config, renderer=renderer)
        _check_image_size(model, folder)
        hub.load_weights(model, folder)
        model.model_card = hub.read_card(folder)
        model.name_or_path = os.fspath(name_or_path)
        model._loaded_digest = hub.weights_digest(model)
        return model.eval().to(device or "cpu")

    def card(self) -> str:
        """The model card that describes this model as it is now.

        The card it was loaded with while its weights and configuration are unchanged; once they differ (for
        instance after fine-tuning) a new card naming the parent, without the parent's scores
        (`latentface.card.derived_card`); for a model built here, a card from its configuration.
        """
        if self.name_or_path is None:
            return self.model_card or model_card(self.config)
        if self.model_card is not None and hub.weights_digest(self) == self._loaded_digest:
            return self.model_card
        return derived_card(self.config, self.name_or_path, self.model_card)

    def save_pretrained(self, save_directory: str | os.PathLike, *, model_card_text: str | None = None) -> None:
        """Write ``config.json``, ``model.safetensors`` and ``README.md`` (each atomically) to a folder.

        Args:
            save_directory: target folder (created if needed).
            model_card_text: card to write; default `card` (the loaded card only while the model is unchanged).
        """
        hub.save_folder(self, self.config, save_directory, model_card_text or self.card())

    def push_to_hub(
        self,
        repo_id: str,
        *,
        revision: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str = "Upload LatentFace weights",
    ) -> Any:
        """Upload the weights folder (`save_pretrained`) to a Hub model repository.

        Args:
            repo_id: ``org/name``; the repository is created when missing.
            revision: branch to commit to (created from the default branch when missing); default: the default
                branch.
            private: visibility of a repository created here.
            token: Hub token (default: huggingface_hub's).
            commit_message: the commit's message.

        Returns:
            huggingface_hub's ``CommitInfo``.
        """
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None and not revision.startswith("refs/"):  # refs/pr/N exist by definition
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            return api.upload_folder(repo_id=repo_id, folder_path=tmp, revision=revision, commit_message=commit_message)
