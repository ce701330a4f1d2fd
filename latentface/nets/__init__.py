"""Pure network modules (no I/O): the Stage-1 autoencoder parts and the RDM denoiser."""

from latentface.nets.autoencoder import ConfidenceNet, EncoderDecoder, PlainEncoder
from latentface.nets.rdm import ConditionalDenoiser

__all__ = ["ConditionalDenoiser", "ConfidenceNet", "EncoderDecoder", "PlainEncoder"]
