# Stage 4 output: tables and plots over every evaluation.


rule report:
    input:
        eval_results(),
    output:
        md=report(f"{RESULTS}/report/results.md", caption="../report/results.rst", category="Results"),
        csv=f"{RESULTS}/report/results.csv",
        plot=report(f"{RESULTS}/report/accuracy.png", caption="../report/accuracy.rst", category="Results"),
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    shell:
        "{PY} -m dnn report {input} --md {output.md} --csv {output.csv} --plot {output.plot} > {log} 2>&1"
