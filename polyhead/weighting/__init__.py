"""Loss-combination methods, chosen by name (`training.weighting`)."""

from polyhead.weighting.base import WEIGHTINGS, StepContext, WeightingMethod, build_weighting, register_weighting
from polyhead.weighting import simple  # noqa: F401  (registers equal, static)

__all__ = ["WEIGHTINGS", "StepContext", "WeightingMethod", "build_weighting", "register_weighting"]
