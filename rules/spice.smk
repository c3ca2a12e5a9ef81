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
    log:
        f"{RESULTS}/logs/spice/{{circuit}}.tiles.log",
    benchmark:
        f"{RESULTS}/benchmarks/spice/{{circuit}}.tiles.tsv"
    shell:
        "{PY} -m dnn export-tiles --model {input} --circuit-name {wildcards.circuit} --circuit {params.circuit:q} "
        "--crossbar-json {params.crossbar:q} --seed {params.seed} --out {output} > {log} 2>&1"


rule spice_shard:
    input:
        spice_shard_inputs,
    output:
        temp(f"{RESULTS}/spice/{{circuit}}/shard{{shard}}.h5"),
    params:
        circuit=circuit_json,
        sampling=sampling_json,
    log:
        f"{RESULTS}/logs/spice/{{circuit}}/shard{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/spice/{{circuit}}/shard{{shard}}.tsv"
    shell:
        "{PY} -m spice simulate --name {wildcards.circuit} --circuit {params.circuit:q} "
        "--sampling {params.sampling:q} --shard {wildcards.shard} --out {output} --quiet > {log} 2>&1"


rule spice_merge:
    input:
        spice_shards,
    output:
        f"{RESULTS}/spice/{{circuit}}.h5",
    log:
        f"{RESULTS}/logs/spice/{{circuit}}.merge.log",
    benchmark:
        f"{RESULTS}/benchmarks/spice/{{circuit}}.merge.tsv"
    shell:
        "{PY} -m spice merge {input} --out {output} > {log} 2>&1 && {PY} -m spice inspect {output} >> {log} 2>&1"


rule spice_dnn_samples:
    input:
        f"{RESULTS}/spice/{{circuit}}.tiles.npz",
    output:
        f"{RESULTS}/spice/{{circuit}}.dnn.h5",
    params:
        circuit=circuit_json,
        sampling=dnn_sampling_json,
    log:
        f"{RESULTS}/logs/spice/{{circuit}}.dnn.log",
    benchmark:
        f"{RESULTS}/benchmarks/spice/{{circuit}}.dnn.tsv"
    shell:
        "{PY} -m spice simulate --name {wildcards.circuit} --circuit {params.circuit:q} "
        "--sampling {params.sampling:q} --out {output} --quiet > {log} 2>&1"

