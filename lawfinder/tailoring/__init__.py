"""The tailoring core: per-example inner steps on an unsupervised conservation loss.

:mod:`~lawfinder.tailoring.loss` holds the losses, :mod:`~lawfinder.tailoring.inner` the inner
steps (its ``"vmap"`` engine, and :mod:`~lawfinder.tailoring.lowrank`'s), :mod:`~lawfinder.tailoring.meta`
meta-tailoring, and :mod:`~lawfinder.tailoring.predictor` the predictor of dx/dt they adapt.
"""

from lawfinder.tailoring.inner import METHODS, OPTIMIZERS, predict_with, tailor, tailored_predict
from lawfinder.tailoring.loss import (
    DERIVATIVE_FORMS,
    LOSS_FORMS,
    SEQUENCE_FORMS,
    ConservedQuantity,
    NoetherLoss,
    TailoringLoss,
    conservation_loss,
)

__all__ = [
    "DERIVATIVE_FORMS",
    "LOSS_FORMS",
    "METHODS",
    "OPTIMIZERS",
    "SEQUENCE_FORMS",
    "ConservedQuantity",
    "NoetherLoss",
    "TailoringLoss",
    "conservation_loss",
    "predict_with",
    "tailor",
    "tailored_predict",
]
