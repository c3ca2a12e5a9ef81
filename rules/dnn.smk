# Stage 3: software baselines, then every circuit x model x scenario through the crossbar layers
# with each mitigation method (stage 4 procedures live in dnn/mitigation.py).


rule train_model:
    output:
        f"{RESULTS}/models/{{model}}.pt",
    params:
        model=model_json,
    threads: 1  # one torch thread: the README's numbers are reproducible at this thread count
    resources:
        mem_mb=3000,  # digits BN-CNN: 16 s, max RSS 0.28 GB; MNIST/CIFAR-10 models and batches are larger
        runtime=120,  # larger models and datasets (MNIST, CIFAR-10) train for longer
    log:
        f"{RESULTS}/logs/models/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/models/{{model}}.tsv"
    shell:
        "python3 -m dnn train --params-json {params.model:q} --threads {threads} --out {output} > {log} 2>&1"


rule evaluate:
    input:
        model=f"{RESULTS}/models/{{model}}.pt",
        surrogate=surrogate_path,
    output:
        f"{RESULTS}/eval/{{circuit}}/{{model}}/{{scenario}}.json",
    params:
        circuit=circuit_json,
        crossbar=scenario_json,
        evaluation=evaluation_json,
        device_preset=device_preset_flag,
    threads: 1  # as train_model; evaluations run side by side, one per job slot
    priority: evaluation_priority  # per-read noise, the longest evaluations, first
    resources:
        mem_mb=3000,  # default run: 66-149 s, peak 0.7-0.8 GB; 128x128 read noise up to 362 s
        runtime=180,  # MNIST: ~12x the crossbar work of digits
    log:
        f"{RESULTS}/logs/eval/{{circuit}}/{{model}}/{{scenario}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval/{{circuit}}/{{model}}/{{scenario}}.tsv"
    shell:
        "python3 -m dnn evaluate --model {input.model} --surrogate {input.surrogate} "
        "--circuit-name {wildcards.circuit} --circuit {params.circuit:q} --scenario {wildcards.scenario} "
        "--crossbar-json {params.crossbar:q} {params.device_preset} --evaluation-json {params.evaluation:q} "
        "--threads {threads} --out {output} > {log} 2>&1"
