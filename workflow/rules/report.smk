rule report:
    """Comparison of every variant against the baseline: table, figures, HTML page."""
    input:
        metrics=all_runs(rules.evaluate.output.metrics),
        per_image=all_runs(rules.evaluate.output.per_image),
        weights=all_runs(rules.evaluate.output.weights),
        renders=all_runs(rules.evaluate.output.renders),
        summaries=all_runs(rules.train.output.summary),
        train_logs=all_runs(rules.train.output.train_log),
        configs=all_runs(rules.train.output.config),
        videos=all_runs(rules.render.output.rgb_gif),
    output:
        md=out("report/report.md"),
        csv=report(out("report/report.csv"), caption="../report/report_csv.rst", category="Comparison"),
        runs=report(out("report/runs.csv"), caption="../report/runs_csv.rst", category="Comparison"),
        html=report(out("report/report.html"), caption="../report/report_html.rst", category="Comparison"),
        figures=report(
            directory(out("report/figures")),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
    params:
        results=lambda wildcards, output: parent_dir(parent_dir(output.md)),
        settings=REPORT_SETTINGS,
        outdir=lambda wildcards, output: parent_dir(output.md),
    log:
        log_path("report", "report"),
    benchmark:
        benchmark_path("report", "report")
    threads: stage_resource("report", "threads")
    resources:
        mem_mb=stage_resource("report", "mem_mb"),
        runtime=stage_resource("report", "runtime"),
    conda:
        "../envs/nerfpipe.yaml"
    shell:
        "nerfpipe report --results {params.results:q} --out {params.outdir:q}"
        " --settings {params.settings:q} > {log:q} 2>&1"
