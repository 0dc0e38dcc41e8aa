"""Evaluation as a pipeline: declared datasets with gold data, grouped in tiers (core on every
change, domain nightly, stress before a release), scored with the field's metrics, kept as a
time series, and gated against the last accepted result (docs/evaluation.md).

The plain pieces live here (datasets, metrics, the history store, the gate, the trend chart,
the report, the LLM judge); `mmflow.flows.evaluation` runs them as a Prefect flow.
"""
