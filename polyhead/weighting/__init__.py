"""Loss-combination methods, chosen by name (`training.weighting`)."""

from polyhead.weighting.base import (WEIGHTINGS, StepContext, WeightingMethod, build_weighting, check_weighting,
                                    register_weighting)
from polyhead.weighting import simple  # noqa: F401  (registers equal, static)
from polyhead.weighting import loss_based  # noqa: F401  (registers uncertainty, dwa, rlw, famo)
from polyhead.weighting import gradient  # noqa: F401  (registers gradnorm, mgda, pcgrad, cagrad, nash_mtl, imtl, upgrad)

__all__ = ["WEIGHTINGS", "StepContext", "WeightingMethod", "build_weighting", "check_weighting", "register_weighting"]
