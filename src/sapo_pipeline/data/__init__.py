"""Raw-data readers, the synthetic generator, filtering, sequences, splits and row accounting.

Nothing in this package imports Kedro: the pipelines in ``sapo_pipeline.pipelines`` wire it up.
"""
