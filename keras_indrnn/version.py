"""The package's version, recorded in the configs it saves."""

__version__ = "0.3.0.dev0"

CONFIG_KEY = "keras_indrnn_version"


def versioned(config):
    """`config` with the version of the package that wrote it."""
    return {**config, CONFIG_KEY: __version__}


def from_versioned_config(cls, config):
    """`cls(**config)` for a config written by `versioned`, or a
    `ValueError` that names both versions where this one cannot read it."""
    config = dict(config)
    saved = config.pop(CONFIG_KEY, None)
    try:
        return cls(**config)
    except (TypeError, ValueError) as error:
        if saved == __version__:
            raise
        raise ValueError(
            f"This {cls.__name__} was saved by keras_indrnn "
            f"{saved or 'before 0.2.0'}, and keras_indrnn {__version__} "
            f"cannot read its configuration: {error} Load it with the "
            "version that saved it."
        ) from error
