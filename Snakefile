# xbarchar: SPICE-grounded characterization of analog in-memory-computing crossbars.
# This file is a table of contents; every stage lives in rules/*.smk and calls a package CLI.
from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "config/config.yaml"


include: "rules/config.smk"


validate(config, "config/schema.yaml")


include: "rules/common.smk"
include: "rules/spice.smk"
include: "rules/surrogate.smk"
include: "rules/dnn.smk"
include: "rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True
