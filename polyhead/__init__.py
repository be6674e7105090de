"""polyhead: multi-task image classification with one shared backbone and many heads.

    import polyhead
    run = polyhead.fit("my.yaml", ["training.epochs=3"])
    predictor = polyhead.load(run.run_dir)
"""

__version__ = "0.1.0"

__all__ = ["fit", "load", "load_config", "Predictor", "__version__"]


def __getattr__(name):  # keep `import polyhead` light: torch loads on first use
    if name in ("fit", "load", "Predictor"):
        from polyhead import api

        return getattr(api, name)
    if name == "load_config":
        from polyhead.config.loading import load_config

        return load_config
    raise AttributeError(f"module 'polyhead' has no attribute {name!r}")
