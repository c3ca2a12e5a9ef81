# Stage 2: one neural surrogate per circuit, shared by every model and scenario.


rule surrogate_train:
    input:
        f"{RESULTS}/spice/{{circuit}}.h5",
    output:
        surrogate=f"{RESULTS}/surrogate/{{circuit}}.h5",
        fidelity=f"{RESULTS}/surrogate/{{circuit}}.fidelity.json",
        plot=f"{RESULTS}/surrogate/{{circuit}}.fidelity.png",
    params:
        surrogate=surrogate_params_json,
    log:
        f"{RESULTS}/logs/surrogate/{{circuit}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/surrogate/{{circuit}}.tsv"
    shell:
        "{PY} -m surrogate train --data {input} --out {output.surrogate} --params-json {params.surrogate:q} "
        "--fidelity-json {output.fidelity} --fidelity-png {output.plot} > {log} 2>&1"
