"""Evaluation metrics: Unsup3D's depth metrics (SIDE, MAD) with baselines, identity retrieval, linear probe."""

from latentface.eval.depth_metrics import (
    DepthMetrics,
    Summary,
    angular_error,
    constant_depth_baseline,
    depth_metrics,
    erode_mask,
    evaluation_mask,
    foreground_mask,
    mad,
    mean_depth_baseline,
    mean_gt_depth,
    side,
    summarize,
    summarize_depth_metrics,
)
from latentface.eval.probes import ProbeResult, RetrievalResult, identity_retrieval, linear_probe

__all__ = [
    "DepthMetrics",
    "ProbeResult",
    "RetrievalResult",
    "Summary",
    "angular_error",
    "constant_depth_baseline",
    "depth_metrics",
    "erode_mask",
    "evaluation_mask",
    "foreground_mask",
    "identity_retrieval",
    "linear_probe",
    "mad",
    "mean_depth_baseline",
    "mean_gt_depth",
    "side",
    "summarize",
    "summarize_depth_metrics",
]
