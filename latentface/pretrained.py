"""Weights by name: the bundled demo weights and a registry of the authors' weights, downloaded and converted once.

`REGISTRY` lists weights published outside any model hub. Each entry names its source, licence and file; the first
`download` (or `LatentFace.from_pretrained(name)`) fetches the file (`latentface.download`), checks it (zip
integrity, the expected checkpoint inside, every key and shape by `latentface.convert`), converts it and caches the
converted weights folder, whose card records where the file came from and its SHA-256. Later loads read the cache
and never touch the network.

- ``unsup3d-celeba`` / ``unsup3d-synface``: Unsup3D's published CelebA and synthetic-face models (Stage 1 only:
  `LatentFace.encode`, `render` and ``latentface reconstruct`` work; `disentangle` and `features` need an RDM).
- ``latentface-official``: the LatentFace authors' ``diffusion_64.pth`` (Stage 1 and the RDM); the authors share it
  from a folder link rather than a fixed URL, so the user gives the file or a URL to it
  (``download("latentface-official", source=...)``).

Cache: ``<root>/weights/<name>/`` (a weights folder) and ``<root>/downloads/`` (part files of interrupted downloads;
an archive is deleted once converted). ``<root>`` is `cache_dir` when given, else ``$LATENTFACE_CACHE``, else
``$XDG_CACHE_HOME/latentface`` (``~/.cache/latentface``).
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from latentface import hub
from latentface.download import download_file, file_lock, mirrored, offline, sha256_file
from latentface.errors import CheckpointError, DownloadError, WeightsError

CACHE_ENV = "LATENTFACE_CACHE"
"""Environment variable overriding the cache folder of downloaded weights."""

Kind = Literal["bundled", "download", "file"]
"""Where weights come from: shipped in the package, downloaded from a fixed URL, or a file the user supplies."""

_UNSUP3D_URL = "https://www.robots.ox.ac.uk/~vgg/research/unsup3d/data/"
_UNSUP3D_SOURCE = ("Unsup3D (Wu, Rupprecht, Vedaldi, CVPR 2020), github.com/elliottwu/unsup3d: the archive its "
                   "script pretrained/{script} downloads")
_ADD_RDM = ("`disentangle` and the `fer` / `verification` features need the LatentFace RDM: get the authors' "
            "`diffusion_64.pth` and run `latentface download latentface-official --from diffusion_64.pth` "
            "(a path or a URL), then load `latentface-official`")


@dataclass(frozen=True)
class Pretrained:
    """A registered set of weights.

    Attributes:
        name: the name `LatentFace.from_pretrained` accepts.
        description: one line saying what the weights are.
        source: who published them, and where.
        licence: the terms they come under, as far as they are published.
        url: the file to download (a zip archive), or None when the user supplies the file.
        member: the checkpoint inside the archive (for archives).
        role: which converter input the checkpoint is: ``"unsup3d"`` (Stage 1) or ``"rdm"`` (with Stage 1).
        sha256: the archive's SHA-256 when it is known in advance (checked); None: recorded at download.
        notes: what a user of the converted weights should know (goes into their card).
    """

    name: str
    description: str
    source: str
    licence: str
    url: str | None
    member: str | None
    role: Literal["unsup3d", "rdm"]
    sha256: str | None = None
    notes: str = ""

    @property
    def kind(self) -> Kind:
        """``"download"`` for a fixed URL, ``"file"`` for a file the user supplies."""
        return "download" if self.url is not None else "file"


REGISTRY: dict[str, Pretrained] = {
    entry.name: entry
    for entry in (
        Pretrained(
            name="unsup3d-celeba",
            description="Unsup3D trained on CelebA real faces, Stage 1 only (encode, render, reconstruct)",
            source=_UNSUP3D_SOURCE.format(script="download_pretrained_celeba.sh"),
            licence="Unsup3D's code and models are under the MIT licence (github.com/elliottwu/unsup3d, LICENSE). "
                    "The model was trained on CelebA, whose images are for non-commercial research purposes only.",
            url=_UNSUP3D_URL + "pretrained_celeba.zip",
            member="pretrained_celeba/checkpoint030.pth",
            role="unsup3d",
            notes=f"Stage 1 only. {_ADD_RDM}.",
        ),
        Pretrained(
            name="unsup3d-synface",
            description="Unsup3D trained on its synthetic faces, Stage 1 only (encode, render, reconstruct)",
            source=_UNSUP3D_SOURCE.format(script="download_pretrained_synface.sh"),
            licence="Unsup3D's code and models are under the MIT licence (github.com/elliottwu/unsup3d, LICENSE). "
                    "Its synthetic faces were rendered with the Basel Face Model, whose terms restrict use to "
                    "non-commercial research.",
            url=_UNSUP3D_URL + "pretrained_synface.zip",
            member="pretrained_synface/checkpoint030.pth",
            role="unsup3d",
            notes="Stage 1 only; trained on 64 px renderings (centre 170 px of each 256 px image, resized), so it "
                  f"suits tight face crops. {_ADD_RDM}.",
        ),
        Pretrained(
            name="latentface-official",
            description="LatentFace (He et al.): Stage 1 and the RDM from the authors' diffusion_64.pth",
            source="LatentFace (He, Xing, Tan, Yan, arXiv 2309.08273), github.com/ryanhe312/LatentFace: "
                   "`diffusion_64.pth` from the folder linked under 'Pretrained Model and Checkpoints' in its README",
            licence="The LatentFace repository publishes no licence: ask its authors before using the weights "
                    "beyond research or redistributing them. Its Stage 1 descends from Unsup3D (MIT) and it was "
                    "trained on CelebA and VoxCeleb.",
            url=None,
            member=None,
            role="rdm",
        ),
    )
}


@dataclass(frozen=True)
class PretrainedInfo:
    """One row of `list_pretrained`.

    Attributes:
        name: the name `LatentFace.from_pretrained` accepts.
        kind: ``"bundled"``, ``"download"`` or ``"file"`` (see `Kind`).
        cached: whether the weights load without the network.
        path: their weights folder when cached (bundled weights always are).
        description: what the weights are.
        source: where they come from.
        licence: their terms.
    """

    name: str
    kind: Kind
    cached: bool
    path: Path | None
    description: str
    source: str
    licence: str


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: `cache_dir`, else ``$LATENTFACE_CACHE``, else ``$XDG_CACHE_HOME/latentface``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "latentface"


def weights_folder(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the converted weights of a registered name are (or will be) cached."""
    return cache_root(cache_dir) / "weights" / name


def _cached(name: str, cache_dir: str | os.PathLike | None) -> Path | None:
    folder = weights_folder(name, cache_dir)
    return folder if (folder / hub.CONFIG_NAME).is_file() and (folder / hub.WEIGHTS_NAME).is_file() else None


def list_pretrained(cache_dir: str | os.PathLike | None = None) -> list[PretrainedInfo]:
    """Every name `LatentFace.from_pretrained` knows: bundled weights first, then `REGISTRY`, with whether each
    is cached.

    Args:
        cache_dir: the cache to look in (default `cache_root`).
    """
    rows = [
        PretrainedInfo(name, "bundled", True, hub.BUILTIN_DIR / name,
                       f"shipped with the package (its card: `latentface info {name}`)", "latentface",
                       "MIT, as the package")
        for name in hub.bundled_names()
    ]
    for entry in REGISTRY.values():
        path = _cached(entry.name, cache_dir)
        rows.append(PretrainedInfo(entry.name, entry.kind, path is not None, path, entry.description, entry.source,
                                   entry.licence))
    return rows


def names() -> list[str]:
    """Every known name: bundled, then registered."""
    return [*hub.bundled_names(), *REGISTRY]


def resolve(name: str, *, cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
            progress: bool = True) -> Path:
    """The weights folder of a registered name, downloading and converting it on first use.

    Raises:
        WeightsError: not cached and downloads are off (``local_files_only`` or ``HF_HUB_OFFLINE``), or the entry
            needs a file from the user; `DownloadError` when the download or its checks fail.
    """
    entry = REGISTRY[name]
    found = _cached(name, cache_dir)
    if found is not None:
        return found
    where = weights_folder(name, cache_dir)
    if entry.url is None:
        raise WeightsError(
            f"{name!r} is not in the cache ({where}) and cannot be downloaded by name. Get its file ({entry.source}), "
            f"then run `latentface download {name} --from FILE_OR_URL` (or latentface.pretrained.download({name!r}, "
            "source=...)) once"
        )
    if local_files_only or offline():
        why = "local_files_only=True" if local_files_only else "HF_HUB_OFFLINE is set"
        raise WeightsError(
            f"{name!r} is not in the cache ({where}) and downloads are off ({why}): run `latentface download "
            f"{name}` where the network is reachable (or copy that folder here)"
        )
    return download(name, cache_dir=cache_dir, progress=progress)


def download(
    name: str,
    *,
    source: str | os.PathLike | None = None,
    sha256: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Download (or take), check, convert and cache registered weights; nothing is done when they are cached.

    Args:
        name: a `REGISTRY` name.
        source: for entries without a URL (``latentface-official``): the checkpoint's path or http(s) URL.
        sha256: expected SHA-256 of the downloaded file or of `source` (overrides the entry's).
        cache_dir: cache folder (default `cache_root`).
        force: download and convert again even when cached.
        progress: show a progress bar on stderr.

    Returns:
        The cached weights folder.

    Raises:
        WeightsError: an unknown name, or a missing `source`.
        DownloadError: the download fails, or the file is not the expected archive or checkpoint (nothing is
            cached then, and a bad download is deleted).
    """
    if name not in REGISTRY:
        known = ", ".join(REGISTRY)
        raise WeightsError(f"{name!r} is not a downloadable name ({known}); bundled weights need no download")
    entry = REGISTRY[name]
    if entry.url is None and source is None:
        raise WeightsError(f"{name!r} needs its file: {entry.source}; pass it as source= (--from), a path or a URL")
    if entry.url is not None and source is not None:
        raise WeightsError(f"{name!r} is downloaded from {entry.url}; source= is only for entries without a URL")
    root = cache_root(cache_dir)
    target = weights_folder(name, cache_dir)
    with file_lock(root / "downloads" / f"{name}.lock"):
        if not force and _cached(name, cache_dir) is not None:
            return target
        if entry.url is not None:
            url = mirrored(entry.url)
            archive = root / "downloads" / url.rsplit("/", 1)[-1]
            digest = download_file(url, archive, sha256=sha256 or entry.sha256, progress=progress)
            origin = url if url == entry.url else f"{url} (a mirror of {entry.url})"
            _install(entry, archive, origin, digest, target, downloaded=True)
            archive.unlink(missing_ok=True)
        else:
            checkpoint, origin, digest, downloaded = _source_file(entry, os.fspath(source), root, sha256,  # type: ignore[arg-type]
                                                                  progress)
            _install(entry, checkpoint, origin, digest, target, downloaded=downloaded)
            if downloaded:
                checkpoint.unlink(missing_ok=True)
    return target


def _source_file(entry: Pretrained, source: str, root: Path, sha256: str | None,
                 progress: bool) -> tuple[Path, str, str, bool]:
    """The user's checkpoint as a local file (downloaded into the cache when `source` is a URL): its path, origin,
    SHA-256 and whether it was downloaded."""
    if source.startswith(("http://", "https://")):
        dest = root / "downloads" / f"{entry.name}-{source.rsplit('/', 1)[-1].split('?')[0] or 'checkpoint.pth'}"
        return dest, source, download_file(source, dest, sha256=sha256, progress=progress), True
    path = Path(source).expanduser().resolve()
    if not path.is_file():
        raise DownloadError(f"{entry.name}: {source!r} is neither an existing file nor an http(s) URL")
    digest = sha256_file(path)
    if sha256 is not None and digest != sha256.lower():
        raise DownloadError(f"{entry.name}: {str(path)!r} has SHA-256 {digest}, not the expected {sha256.lower()}")
    return path, str(path), digest, False


def _find_member(archive: zipfile.ZipFile, entry: Pretrained, origin: str) -> zipfile.ZipInfo:
    """The archive's checkpoint: the entry's path, or failing that the one file with the same name."""
    assert entry.member is not None
    members = [m for m in archive.infolist() if not m.is_dir()]
    exact = [m for m in members if m.filename == entry.member]
    named = [m for m in members if m.filename.rsplit("/", 1)[-1] == entry.member.rsplit("/", 1)[-1]]
    found = exact or named
    if len(found) != 1:
        listed = ", ".join(m.filename for m in members[:10]) + (" ..." if len(members) > 10 else "")
        what = "no" if not found else f"{len(found)} candidates for the"
        raise DownloadError(f"{origin}: the archive holds {what} checkpoint {entry.member!r} (it holds: "
                            f"{listed or 'nothing'})")
    return found[0]


def _extract(archive_path: Path, entry: Pretrained, origin: str, folder: Path) -> Path:
    """Copy the entry's checkpoint out of the archive into `folder` (CRC checked while reading)."""
    assert entry.member is not None
    try:
        with zipfile.ZipFile(archive_path) as archive:
            member = _find_member(archive, entry, origin)
            out = folder / entry.member.rsplit("/", 1)[-1]
            with archive.open(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except zipfile.BadZipFile as err:
        raise DownloadError(f"{origin}: not a valid zip archive ({err})") from err
    except (OSError, EOFError, NotImplementedError) as err:  # truncated members, unsupported compression
        raise DownloadError(f"{origin}: cannot read {entry.member!r} from the archive ({err})") from err
    return out


def _card_notes(entry: Pretrained, origin: str, digest: str, size: int, from_archive: bool) -> str:
    what = "archive" if from_archive else "file"
    lines = [
        f"Fetched as `{entry.name}` by `latentface download` on {datetime.date.today().isoformat()}:",
        "",
        f"- {what}: {origin}",
        f"- {what} SHA-256: `{digest}` ({size} bytes)",
        *([f"- checkpoint in the archive: `{entry.member}`"] if from_archive else []),
        f"- source: {entry.source}",
        f"- licence: {entry.licence}",
    ]
    if entry.notes:
        lines += ["", entry.notes]
    return "\n".join(lines)


def _install(entry: Pretrained, file: Path, origin: str, digest: str, target: Path, *, downloaded: bool) -> None:
    """Check and convert an archive (or, for entries without a URL, a checkpoint) into `target`.

    On any failure nothing is left in the cache, and a downloaded file is deleted (the next attempt downloads
    it again).
    """
    from latentface.convert import convert_checkpoints

    from_archive = entry.member is not None
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{entry.name}."))
    checkpoint = file
    try:
        try:
            if from_archive:
                checkpoint = _extract(file, entry, origin, work)
            notes = _card_notes(entry, origin, digest, file.stat().st_size, from_archive)
            convert_checkpoints(work / "weights", title=f"{entry.name} (converted)", notes=notes,
                                **{entry.role: checkpoint})
        except (DownloadError, CheckpointError) as err:
            if downloaded:
                file.unlink(missing_ok=True)
            message = str(err) if isinstance(err, DownloadError) else f"{origin}: {err}"
            if from_archive:  # name the checkpoint as it is in the archive, not by its temporary copy
                message = message.replace(str(checkpoint), f"{entry.member} (in the archive)")
            raise DownloadError(f"{entry.name}: {message}; nothing was cached") from err
        _replace_folder(work / "weights", target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _replace_folder(new: Path, target: Path) -> None:
    """Move the folder `new` to `target`, replacing an existing one; readers see the old or the new folder."""
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
    os.replace(target, old / "weights")
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
