# Stage 4 output: tables and plots over every evaluation.


rule report:
    input:
        evals=eval_results(),
        fidelity=expand(f"{RESULTS}/surrogate/{{circuit}}.{{kind}}.json", circuit=simulated_circuits(),
                        kind=["fidelity", "fidelity_dnn"]),
    output:
        md=report(f"{RESULTS}/report/results.md", caption="../report/results.rst", category="Results"),
        csv=f"{RESULTS}/report/results.csv",
        summary=f"{RESULTS}/report/summary.json",  # statements (intervals over seeds) and warnings
        plot=report(REPORT_PLOTS["accuracy"], caption="../report/accuracy.rst", category="Results"),
        sigma=report(REPORT_PLOTS["accuracy_vs_sigma"], caption="../report/accuracy_vs_sigma.rst",
                     category="Sweeps"),
        drift=report(REPORT_PLOTS["accuracy_vs_drift"], caption="../report/accuracy_vs_drift.rst",
                     category="Sweeps"),
        size=report(REPORT_PLOTS["accuracy_vs_size"], caption="../report/accuracy_vs_size.rst",
                    category="Sweeps"),
    params:
        report=report_json,
    threads: 1  # tables and matplotlib plots; no torch work (OMP_NUM_THREADS is set to threads)
    resources:
        mem_mb=1000,  # max RSS 0.26 GB
        runtime=10,
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    shell:
        "python3 -m dnn report {input.evals} --fidelity {input.fidelity} --settings-json {params.report:q} --md {output.md} --csv {output.csv} --summary-json {output.summary} "
        "--plot {output.plot} --plot-sigma {output.sigma} --plot-drift {output.drift} --plot-size {output.size} "
        "--threads {threads} > {log} 2>&1"


rule report_energy:
    input:
        evals=eval_results(),
    output:
        plot=report(f"{RESULTS}/report/accuracy_energy.png", caption="../report/accuracy_energy.rst", category="Results"),
        md=f"{RESULTS}/report/energy.md",
    params:
        loss=energy_loss_points,
    threads: 1  # one matplotlib figure; no torch work
    resources:
        mem_mb=1000,
        runtime=10,
    log:
        f"{RESULTS}/logs/report_energy.log",
    benchmark:
        f"{RESULTS}/benchmarks/report_energy.tsv"
    shell:
        "python3 -m dnn.report_energy {input.evals} --plot {output.plot} --md {output.md} --loss-points {params.loss} "
        "--threads {threads} > {log} 2>&1"
