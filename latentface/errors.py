"""Typed errors raised by latentface."""


class LatentFaceError(Exception):
    """Base class of every error raised on purpose by latentface."""


class InvalidImageError(LatentFaceError, ValueError):
    """An input image has the wrong type, shape, dtype or value range, contains NaN/Inf, or cannot be read."""


class DamagedImageError(InvalidImageError):
    """An image file decodes, but Pillow reported damage while reading it (its pixels may be garbled).

    Attributes:
        detail: what Pillow reported.
    """

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (str(self), self.detail)


class WeightsError(LatentFaceError):
    """Weights cannot be found, or do not match the model they are loaded into (names the tensor)."""


class CheckpointError(LatentFaceError):
    """An official checkpoint given to the converter is malformed (names the network, key and shape)."""


class DownloadError(WeightsError):
    """Weights could not be downloaded, or the download is not what was expected (names the URL or the file and
    what is wrong)."""
