# Stage 2: one neural surrogate per circuit, shared by every model and scenario.


rule surrogate_train:
    input:
        spice_dataset_path,
    output:
        surrogate=f"{RESULTS}/surrogate/{{circuit}}.h5",
        fidelity=f"{RESULTS}/surrogate/{{circuit}}.fidelity.json",
        plot=f"{RESULTS}/surrogate/{{circuit}}.fidelity.png",
    # Between-workflow cache (`--cache`, README "Reusing SPICE datasets and surrogates"). Snakemake
    # refuses a benchmark file on a cached rule; its resources come from the runs before caching.
    cache: between_workflow_cache()
    params:
        surrogate=surrogate_params_json,
    threads: 1  # deterministic for a given thread count; small batched solves are fastest on one
    resources:
        mem_mb=2000,  # default run: 35-45 s; max RSS 0.47 GB (config/test.yaml)
        runtime=60,
    log:
        f"{RESULTS}/logs/surrogate/{{circuit}}.log",
    shell:
        "python3 -m surrogate train --data {input} --out {output.surrogate} --params-json {params.surrogate:q} "
        "--fidelity-json {output.fidelity} --fidelity-png {output.plot} --threads {threads} > {log} 2>&1"


rule surrogate_fidelity_dnn:
    input:
        surrogate=f"{RESULTS}/surrogate/{{circuit}}.h5",
        data=f"{RESULTS}/spice/{{circuit}}.dnn.h5",
    output:
        fidelity=f"{RESULTS}/surrogate/{{circuit}}.fidelity_dnn.json",
        plot=f"{RESULTS}/surrogate/{{circuit}}.fidelity_dnn.png",
    threads: 1
    resources:
        mem_mb=1000,  # max RSS 0.31 GB
        runtime=15,
    log:
        f"{RESULTS}/logs/surrogate/{{circuit}}.fidelity_dnn.log",
    benchmark:
        f"{RESULTS}/benchmarks/surrogate/{{circuit}}.fidelity_dnn.tsv"
    shell:
        "python3 -m surrogate fidelity --surrogate {input.surrogate} --data {input.data} --whole-file "
        "--json {output.fidelity} --png {output.plot} --threads {threads} > {log} 2>&1"

