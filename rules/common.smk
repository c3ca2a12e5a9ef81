# Named helpers that hand each job only its slice of the config (so a config change re-runs exactly
# what it affects), and the wildcard constraints, declared once. The logic lives in the pipeline
# package (pipeline/params.py, pipeline/cache.py, pipeline/cluster.py); these bind it to wildcards.
import functools
import os

from snakemake.exceptions import WorkflowError

from pipeline import cache, cluster, params
from pipeline.config import exit_on_config_error, validate_config
from pipeline.interpreter import use_running_interpreter

# Every config mistake fails here, when the workflow is parsed (`snakemake -n` included), naming the key.
exit_on_config_error(validate_config, config)

# The shell commands run `python3 -m <stage>`: the Python running Snakemake.
use_running_interpreter()
# Progress bars go to the job logs: one update every 30 s keeps them readable.
os.environ.setdefault("TQDM_MININTERVAL", "30")
RESULTS = config["results_dir"]
REPORT_PLOTS = params.report_plots(RESULTS)
# No `conda:` directive on any job (the one lint finding left, see docs/scale-out.md); every job needs the project,
# which environment.yml installs from the checkout by a relative pip path that a per-rule environment,
# built from a copy under .snakemake/conda/, cannot resolve. Jobs run in the environment that runs Snakemake.


wildcard_constraints:
    circuit=params.alternatives(config["circuits"]),
    model=params.alternatives(config["models"]),
    scenario=params.alternatives(config["scenarios"]),
    shard=r"\d+",


def circuit_json(wildcards):
    return params.circuit_json(config, wildcards.circuit)


def sampling_json(wildcards):
    return params.sampling_json(config, wildcards.circuit)


def spice_shard_inputs(wildcards):
    return params.spice_shard_inputs(config, wildcards.circuit)


def source_model_path(wildcards):
    return params.source_model_path(config, wildcards.circuit)


def sampling_seed(wildcards):
    return params.sampling_seed(config, wildcards.circuit)


def dnn_sampling_json(wildcards):
    return params.dnn_sampling_json(config, wildcards.circuit)


def crossbar_json(wildcards):
    return params.crossbar_json(config)


def spice_shards(wildcards):
    return params.spice_shards(config, wildcards.circuit)


def evaluation_priority(wildcards):
    return params.evaluation_priority(config, wildcards.scenario)


def spice_shard_runtime_min(wildcards):
    return params.spice_shard_runtime_min(config, wildcards.circuit)


def surrogate_params_json(wildcards):
    return params.surrogate_params_json(config, wildcards.circuit)


def model_json(wildcards):
    return params.model_json(config, wildcards.model)


def scenario_json(wildcards):
    return params.scenario_json(config, wildcards.scenario)


def device_preset_flag(wildcards):
    return params.device_preset_flag(config, wildcards.scenario)


def evaluation_json(wildcards):
    return params.evaluation_json(config)


def report_json(wildcards):
    return params.report_json(config)


def energy_loss_points(wildcards):
    return config["report"]["energy_loss_points"]


def eval_results():
    return params.eval_results(config)


# ----------------------------------------------------------------------------- between-workflow cache
# `snakemake --cache` (pipeline/cache.py): the SPICE-dataset and surrogate jobs are cached, and an index
# by circuit provenance lets another project skip ngspice and training for a circuit it already holds.
def between_workflow_cache():
    """True when this run uses `--cache`. The cached jobs are marked only then: otherwise Snakemake warns
    on every run that they could be cached."""
    return workflow.workflow_settings.cache is not None


@functools.cache
def index_path(circuit, stage):
    """Where the cache index links this circuit's dataset or surrogate; None without `--cache` or a key."""
    folder = cache.index_folder(between_workflow_cache())
    if folder is None:
        return None
    commands = {name: workflow.get_rule(name).shellcmd for name in cache.STAGE_RULES[stage]}
    return cache.index_path(folder, stage, cache.provenance_key(config, circuit, stage, workflow.basedir, commands))


def cached_file(circuit, stage):
    return cache.cached_file(index_path(circuit, stage))


def simulated_circuits():
    """Circuits whose surrogate is trained here (no external surrogate_file, none in the cache index)."""
    return [c for c, entry in config["circuits"].items()
            if not entry.get("surrogate_file") and not cached_file(c, "surrogate")]


def spice_dataset_path(wildcards):
    """The circuit's SPICE dataset: from the cache index when it holds one, else made here."""
    return cached_file(wildcards.circuit, "spice") or f"{RESULTS}/spice/{wildcards.circuit}.h5"


def surrogate_path(wildcards):
    """An external surrogate file named in the config, else one from the cache index, else the one
    trained by the workflow."""
    external = config["circuits"][wildcards.circuit].get("surrogate_file")
    return external or cached_file(wildcards.circuit, "surrogate") or f"{RESULTS}/surrogate/{wildcards.circuit}.h5"


def index_cached_outputs():
    """After a successful run with `--cache`: index every dataset and surrogate Snakemake moved into it."""
    for circuit in simulated_circuits():
        for stage in cache.CACHE_INDEX_STAGES:
            cache.link_into_index(f"{RESULTS}/{stage}/{circuit}.h5", index_path(circuit, stage))


def all_targets():
    return [
        *expand(f"{RESULTS}/surrogate/{{circuit}}.fidelity.json", circuit=simulated_circuits()),
        *expand(f"{RESULTS}/surrogate/{{circuit}}.fidelity_dnn.json", circuit=simulated_circuits()),
        *eval_results(),
        f"{RESULTS}/report/results.md",
        f"{RESULTS}/report/results.csv",
        *REPORT_PLOTS.values(),
        f"{RESULTS}/report/accuracy_energy.png",
        f"{RESULTS}/report/energy.md",
    ]


# ----------------------------------------------------------------------------- cluster check
# With the SLURM executor, before anything is submitted: the cluster answers (munge, slurmctld) and knows
# every partition and account the jobs ask for, and the status command works (pipeline/cluster.py).
def check_cluster():
    plugin = workflow.executor_plugin
    executor = plugin.cli_prefix if plugin is not None else None
    if executor not in cluster.SLURM_EXECUTORS:
        return
    problems = cluster.cluster_problems(executor, [job.resources for job in workflow.dag.needrun_jobs()],
                                        workflow.executor_settings.status_command, workflow.basedir)
    if problems:
        raise WorkflowError("the SLURM cluster cannot run this workflow:\n  " + "\n  ".join(problems))


onstart:
    check_cluster()


onsuccess:
    index_cached_outputs()
