"""Where weights come from and how they are written: names, local dirs and Hub ids; strict loading.

A weights folder holds ``config.json`` (`LatentFaceConfig`, preprocessing included), ``model.safetensors``
and a model card ``README.md``. Names resolve in this order: an existing local directory, a bundled name
(`bundled_names`), a registered name (`latentface.pretrained.REGISTRY`: downloaded, converted and cached on first
use), a Hugging Face Hub id ``org/name``, optionally prefixed ``hf-hub:`` and suffixed ``@revision``. Hub downloads
go through huggingface_hub, so its cache, ``HF_HUB_OFFLINE`` and ``HF_ENDPOINT`` apply.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import safetensors.torch
import torch
from torch import nn

from latentface.config import LatentFaceConfig
from latentface.errors import WeightsError
from latentface.fileio import write_atomic
from latentface.hashing import state_dict_digest

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
BUILTIN_DIR = Path(__file__).parent / "weights"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_MAX_LISTED = 8


def bundled_names() -> list[str]:
    """Names of the weights shipped inside the package, loadable offline by `LatentFace.from_pretrained`."""
    if not BUILTIN_DIR.is_dir():
        return []
    return sorted(d.name for d in BUILTIN_DIR.iterdir() if (d / CONFIG_NAME).is_file() and (d / WEIGHTS_NAME).is_file())


def parse_hub_id(name: str, revision: str | None = None) -> tuple[str, str | None]:
    """Split ``[hf-hub:]org/name[@revision]`` into repo id and revision.

    Raises:
        WeightsError: for a malformed id, or a revision given both in the name and as an argument.
    """
    repo_id = name.removeprefix("hf-hub:")
    if "@" in repo_id:
        repo_id, _, pinned = repo_id.partition("@")
        if revision is not None and revision != pinned:
            raise WeightsError(f"{name!r} pins revision {pinned!r} but revision={revision!r} was also given")
        revision = pinned or None
    if not _HUB_ID.match(repo_id):
        raise WeightsError(f"{name!r} is not a Hub id of the form 'org/name[@revision]'")
    return repo_id, revision


def _check_folder(folder: Path) -> Path:
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
    if missing:
        raise WeightsError(f"weights folder {str(folder)!r} lacks {', '.join(missing)}")
    return folder


def resolve(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
) -> Path:
    """Local folder holding the weights `name_or_path` refers to, downloading when needed.

    Args:
        name_or_path: a folder, a bundled or registered name, or a Hub id.
        revision: Hub revision.
        cache_dir: Hub cache for Hub ids; cache of converted weights for registered names
            (`latentface.pretrained.cache_root`).
        local_files_only: never download.

    Raises:
        WeightsError: when nothing matches, or the weights cannot be fetched (the cause chained).
    """
    from latentface import pretrained

    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return _check_folder(path)
    name = os.fspath(name_or_path)
    if name in bundled_names():
        return BUILTIN_DIR / name
    if name in pretrained.REGISTRY:
        return _check_folder(pretrained.resolve(name, cache_dir=cache_dir, local_files_only=local_files_only))
    if not (name.startswith("hf-hub:") or _HUB_ID.match(name.partition("@")[0])):
        raise WeightsError(f"{name!r} is not a local directory, a known name ({', '.join(pretrained.names())}) "
                           "or a Hub id 'org/name'")
    repo_id, revision = parse_hub_id(name, revision)
    from huggingface_hub import hf_hub_download

    try:
        config_path = Path(
            hf_hub_download(
                repo_id, CONFIG_NAME, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only
            )
        )
        # The snapshot folder is named by commit: pin the weights to the same commit as the config.
        commit = config_path.parent.name if re.fullmatch(r"[0-9a-f]{40}", config_path.parent.name) else revision
        hf_hub_download(repo_id, WEIGHTS_NAME, revision=commit, cache_dir=cache_dir, local_files_only=local_files_only)
    except Exception as err:  # huggingface_hub raises many error types; all mean "could not get the weights"
        where = f"{repo_id}@{revision}" if revision else repo_id
        raise WeightsError(
            f"could not get weights {where!r} from the Hub (and there is no local folder {name!r}): "
            f"{type(err).__name__}: {err}"
        ) from err
    return _check_folder(config_path.parent)


def load_model_config(folder: Path) -> LatentFaceConfig:
    """Read ``config.json`` of a weights folder."""
    try:
        return LatentFaceConfig.from_json((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (ValueError, TypeError) as err:
        raise WeightsError(f"invalid {CONFIG_NAME} in {str(folder)!r}: {err}") from err


def _listed(keys: list[str]) -> str:
    more = f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def check_state_dict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise `WeightsError` naming every missing, unexpected or misshaped tensor of `state` for `module`."""
    expected = module.state_dict()
    problems = []
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    misshaped = [
        f"{k} {tuple(state[k].shape)} != expected {tuple(expected[k].shape)}"
        for k in sorted(expected.keys() & state.keys())
        if state[k].shape != expected[k].shape
    ]
    if missing:
        problems.append(f"missing tensors: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {_listed(unexpected)}")
    if misshaped:
        problems.append(f"misshaped tensors: {_listed(misshaped)}")
    if problems:
        raise WeightsError(f"weights {source!r} do not match the model: " + "; ".join(problems))


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Raise `WeightsError` naming every floating tensor of `state` that holds NaN or Inf (such weights give NaN
    codes and features for every image)."""
    bad = sorted(k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if bad:
        raise WeightsError(f"weights {source!r} hold NaN or Inf values in tensors: {_listed(bad)}")


def tensor_shapes(folder: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Name and shape of every tensor in a folder's ``model.safetensors``, read from its header only.

    Raises:
        WeightsError: the file cannot be read.
    """
    path = Path(folder) / WEIGHTS_NAME
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise WeightsError(f"cannot read {str(path)!r}: {err}") from err


def load_weights(module: nn.Module, folder: Path) -> None:
    """Strictly load ``model.safetensors`` from `folder` into `module` (which may live on the meta device), as
    float32 whatever the stored floating dtype; non-finite values are refused (`check_finite`)."""
    path = folder / WEIGHTS_NAME
    try:
        state = safetensors.torch.load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise WeightsError(f"cannot read {str(path)!r}: {err}") from err
    check_state_dict(module, state, str(path))
    check_finite(state, str(path))
    # Fresh, aligned storage (not views into the file buffer): same kernels, same numbers as before saving. Weights
    # stored in half precision (to keep a file small) are widened: the model always loads in float32.
    module.load_state_dict({k: v.to(torch.float32 if v.is_floating_point() else v.dtype, copy=True,
                                    memory_format=torch.contiguous_format) for k, v in state.items()},
                           strict=True, assign=True)


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of a model's ``config`` and of every tensor (name, dtype, shape and bytes) of its state dict
    (`latentface.hashing.state_dict_digest` with the configuration's JSON as header)."""
    return state_dict_digest(model.state_dict(), header=model.config.to_json())


def save_folder(module: nn.Module, config: LatentFaceConfig, folder: str | os.PathLike, card: str) -> Path:
    """Write config, safetensors weights and model card into `folder`, each file atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    # One metadata key only: safetensors writes several in random order, and the bytes should be reproducible.
    weights = safetensors.torch.save(state, metadata={"format": "pt"})
    write_atomic(folder / WEIGHTS_NAME, weights)
    write_atomic(folder / CONFIG_NAME, config.to_json().encode("utf-8"))
    write_atomic(folder / CARD_NAME, card.encode("utf-8"))
    return folder


def read_card(folder: Path) -> str | None:
    """The model card text of a weights folder, if it has one."""
    path = folder / CARD_NAME
    return path.read_text(encoding="utf-8") if path.is_file() else None
