"""The workflow's view, above the stages: config validation, per-rule params, the between-workflow cache
index and provenance keys. ``Snakefile`` and ``rules/*.smk`` call it; no stage and nothing in ``xbarchar``
imports it."""
