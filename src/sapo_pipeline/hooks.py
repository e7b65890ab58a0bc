"""Project hooks: parameters are validated once, before any node runs."""

from __future__ import annotations

import logging

from kedro.framework.hooks import hook_impl

from sapo_pipeline.parameters import validate_parameters

log = logging.getLogger(__name__)


class ParameterValidationHooks:
    """Build every typed parameter section from the merged config before a run starts."""

    @hook_impl
    def after_context_created(self, context) -> None:  # noqa: ANN001 - Kedro's signature
        sections = validate_parameters(context.params)
        log.info("parameters valid: %s", ", ".join(sorted(sections)) or "none")
