# Stage 1: ngspice ground truth. Shards are independent jobs; merge joins them into one file.


rule spice_tile_bank:
    input:
        source_model_path,
    output:
        f"{RESULTS}/spice/{{circuit}}.tiles.npz",
    params:
        circuit=circuit_json,
        crossbar=crossbar_json,
        seed=sampling_seed,
    threads: 1
    resources:
        mem_mb=1000,  # default run: 5 s; max RSS 0.31 GB (config/test.yaml)
        runtime=15,
    log:
        f"{RESULTS}/logs/spice/{{circuit}}.tiles.log",
    benchmark:
        f"{RESULTS}/benchmarks/spice/{{circuit}}.tiles.tsv"
    shell:
        "python3 -m dnn export-tiles --model {input} --circuit-name {wildcards.circuit} --circuit {params.circuit:q} "
        "--crossbar-json {params.crossbar:q} --seed {params.seed} --threads {threads} --out {output} > {log} 2>&1"


rule spice_shard:
    input:
        spice_shard_inputs,
    output:
        temp(f"{RESULTS}/spice/{{circuit}}/shard{{shard}}.h5"),
    params:
        circuit=circuit_json,
        sampling=sampling_json,
    threads: 1  # ngspice's KLU solve is single-threaded; shards are the parallelism
    resources:
        mem_mb=1000,  # max RSS 0.07 GB (16x16, config/test.yaml); the netlist and KLU factors grow with the array
        runtime=spice_shard_runtime_min,
    log:
        f"{RESULTS}/logs/spice/{{circuit}}/shard{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/spice/{{circuit}}/shard{{shard}}.tsv"
    shell:
        "python3 -m spice simulate --circuit-name {wildcards.circuit} --circuit {params.circuit:q} "
        "--sampling {params.sampling:q} --shard {wildcards.shard} --out {output} --threads {threads} --no-progress "
        "> {log} 2>&1"


rule spice_merge:
    input:
        spice_shards,
    output:
        f"{RESULTS}/spice/{{circuit}}.h5",
    # Between-workflow cache (`--cache`, README "Reusing SPICE datasets and surrogates"). Snakemake
    # refuses a benchmark file on a cached rule; its resources come from the runs before caching.
    cache: between_workflow_cache()
    threads: 1
    resources:
        mem_mb=1000,  # max RSS 0.05 GB; holds every shard's arrays once (24 x 256 samples of 64x64: a few MB)
        runtime=10,
    log:
        f"{RESULTS}/logs/spice/{{circuit}}.merge.log",
    shell:
        "python3 -m spice merge {input} --out {output} --threads {threads} > {log} 2>&1 && "
        "python3 -m spice inspect {output} --threads {threads} >> {log} 2>&1"


rule spice_dnn_samples:
    input:
        f"{RESULTS}/spice/{{circuit}}.tiles.npz",
    output:
        f"{RESULTS}/spice/{{circuit}}.dnn.h5",
    params:
        circuit=circuit_json,
        sampling=dnn_sampling_json,
    threads: 1
    resources:
        mem_mb=1000,  # default run: 10 s (4 x 256 vectors); max RSS 0.07 GB
        runtime=30,
    log:
        f"{RESULTS}/logs/spice/{{circuit}}.dnn.log",
    benchmark:
        f"{RESULTS}/benchmarks/spice/{{circuit}}.dnn.tsv"
    shell:
        "python3 -m spice simulate --circuit-name {wildcards.circuit} --circuit {params.circuit:q} "
        "--sampling {params.sampling:q} --out {output} --threads {threads} --no-progress > {log} 2>&1"

