# The same config in every Snakemake process of a run, local or on a cluster.
#
# `--configfile X --replace-workflow-config` drops config/config.yaml in the main process, but Snakemake
# starts each remote job step (SLURM: `python -m snakemake --configfiles X ...` inside the allocation)
# without that flag, so the job step re-parsed the workflow with the default config merged in and a
# job's inputs named circuits and models that were never made. The main process therefore records the
# choice in the environment, which job steps inherit (the SLURM executor submits with --export=ALL;
# local jobs are its children), and a job step that finds it replaces its merged config the same way.
import copy
import os

REPLACE_CONFIG_ENV = "XBARCHAR_REPLACE_WORKFLOW_CONFIG"


def propagate_config_replacement():
    """Main process: export whether the default config was replaced. Job step: apply that choice."""
    if workflow.is_main_process:
        os.environ[REPLACE_CONFIG_ENV] = "1" if workflow.config_settings.replace_workflow_config else "0"
    elif os.environ.get(REPLACE_CONFIG_ENV) == "1" and not workflow.config_settings.replace_workflow_config:
        config.clear()
        config.update(copy.deepcopy(workflow.config_settings.overwrite_config))


propagate_config_replacement()
