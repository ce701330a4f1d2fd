"""Evaluation metrics: Unsup3D's depth metrics (SIDE, MAD), the relief and normal slopes with baselines, pose and
light fits, identity retrieval, linear probes and their chance levels, clip invariance, the released FER probe and
verification protocols (with clean variants), ROC/AUC and their plots."""

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
    normal_slope,
    relief,
    side,
    summarize,
    summarize_depth_metrics,
)
from latentface.eval.factor_fit import LinearFit, linear_fit, pose_light_fits
from latentface.eval.fer_probe import (
    ClassificationReport,
    FERProbeResult,
    classification_report,
    train_clean_probe,
    train_released_probe,
)
from latentface.eval.invariance import clip_invariance
from latentface.eval.plots import save_confusion_matrix, save_roc_curve
from latentface.eval.probes import (
    ProbeResult,
    RetrievalResult,
    identity_retrieval,
    linear_probe,
    probe_chance,
    retrieval_chance,
)
from latentface.eval.verification import (
    VerificationReport,
    auc,
    cosine_threshold_protocol,
    pair_classifier_protocol,
    released_folds,
    roc_curve,
)

__all__ = [
    "ClassificationReport",
    "DepthMetrics",
    "FERProbeResult",
    "LinearFit",
    "ProbeResult",
    "RetrievalResult",
    "Summary",
    "VerificationReport",
    "angular_error",
    "auc",
    "classification_report",
    "clip_invariance",
    "constant_depth_baseline",
    "cosine_threshold_protocol",
    "depth_metrics",
    "erode_mask",
    "evaluation_mask",
    "foreground_mask",
    "identity_retrieval",
    "linear_fit",
    "linear_probe",
    "mad",
    "mean_depth_baseline",
    "mean_gt_depth",
    "normal_slope",
    "pair_classifier_protocol",
    "pose_light_fits",
    "probe_chance",
    "released_folds",
    "relief",
    "retrieval_chance",
    "roc_curve",
    "save_confusion_matrix",
    "save_roc_curve",
    "side",
    "summarize",
    "summarize_depth_metrics",
    "train_clean_probe",
    "train_released_probe",
]
