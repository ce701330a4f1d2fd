"""Typed errors raised by latentface."""


class LatentFaceError(Exception):
    """Base class of every error raised on purpose by latentface."""


class InvalidImageError(LatentFaceError, ValueError):
    """An input image has the wrong type, shape, dtype or value range, contains NaN/Inf, or cannot be read."""


class WeightsError(LatentFaceError):
    """Weights cannot be found, or do not match the model they are loaded into (names the tensor)."""


class CheckpointError(LatentFaceError):
    """An official checkpoint given to the converter is malformed (names the network, key and shape)."""


class DownloadError(WeightsError):
    """Weights could not be downloaded, or the download is not what was expected (names the URL or the file and
    what is wrong)."""
