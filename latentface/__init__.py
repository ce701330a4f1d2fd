"""latentface: LatentFace facial representations (3D factors; identity and expression) for PyTorch."""

__version__ = "0.1.0.dev0"

from latentface.config import LatentFaceConfig, PreprocessConfig
from latentface.errors import (
    CheckpointError,
    DamagedImageError,
    DownloadError,
    InvalidImageError,
    LatentFaceError,
    WeightsError,
)
from latentface.model import LatentFace
from latentface.outputs import Disentangled, FaceCodes, Latents, Rendering
from latentface.pretrained import list_pretrained

__all__ = [
    "CheckpointError",
    "DamagedImageError",
    "Disentangled",
    "DownloadError",
    "FaceCodes",
    "InvalidImageError",
    "LatentFace",
    "LatentFaceConfig",
    "LatentFaceError",
    "Latents",
    "PreprocessConfig",
    "Rendering",
    "WeightsError",
    "__version__",
    "list_pretrained",
]
