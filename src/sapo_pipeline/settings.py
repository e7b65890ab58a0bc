"""Kedro project settings. https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

from kedro.config import OmegaConfigLoader

from sapo_pipeline.hooks import (
    NodeTimingHooks,
    ParameterValidationHooks,
    PlainLogHooks,
    QuietProgressHooks,
)

# pluggy calls the hooks of one spec last-registered first: PlainLogHooks, then validation.
HOOKS = (NodeTimingHooks(), QuietProgressHooks(), ParameterValidationHooks(), PlainLogHooks())

CONFIG_LOADER_CLASS = OmegaConfigLoader


def _add(*values: int | str) -> int:
    """``${add:42,${_seed}}``: integer sum (seeds offset by the run's seed)."""
    try:
        return sum(int(v) for v in values)
    except ValueError:
        raise ValueError(f"expected integers (the run's seed), got {list(values)}") from None


CONFIG_LOADER_ARGS = {
    "custom_resolvers": {"add": _add},
    "base_env": "base",
    "default_run_env": "local",
    "merge_strategy": {"parameters": "soft", "catalog": "soft"},
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "catalog": ["catalog*", "catalog*/**", "**/catalog*"],
    },
}
