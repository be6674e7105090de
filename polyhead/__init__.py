"""polyhead: multi-task image classification with one shared backbone and many heads."""

__version__ = "0.1.0"
