# xbarchar: SPICE-grounded characterization of analog in-memory-computing crossbars.
# This file is a table of contents; every stage lives in rules/*.smk and calls a package CLI.
from snakemake.utils import min_version, validate

from pipeline.config import check_schema, check_sources, exit_on_config_error

min_version("8.0")


# Before Snakemake merges or prints the config: each config file within its size, and the config
# tree within its expanded size (nested YAML aliases), else one line naming the file and exit 2.
exit_on_config_error(check_sources, config, workflow.config_settings.configfiles, "config/config.yaml")


configfile: "config/config.yaml"


include: "rules/config.smk"


exit_on_config_error(check_schema, config, f"{workflow.basedir}/config/schema.yaml")
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
