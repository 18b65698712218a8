# The report folder's entries: the layout's REPORT_FILES and REPORT_DIRS (one definition).
REPORT_OUT = {
    key: str(layout.report_dir(RESULTS) / name)
    for key, name in {**layout.REPORT_FILES, **layout.REPORT_DIRS}.items()
}

# Every run's files the report reads, by manifest key (nerfpipe.reporting.RUN_FILES), each a list
# in all_runs' order: scene x variant x seed.
REPORT_RUN_INPUTS = {
    "summary": all_runs(rules.train.output.summary),
    "train_log": all_runs(rules.train.output.train_log),
    "config": all_runs(rules.train.output.config),
    "metrics": all_runs(rules.evaluate.output.metrics),
    "per_image": all_runs(rules.evaluate.output.per_image),
    "weights": all_runs(rules.evaluate.output.weights),
    "renders": all_runs(rules.evaluate.output.renders),
    "rgb_gif": all_runs(rules.render.output.rgb_gif),
    "depth_gif": all_runs(rules.render.output.depth_gif),
    "normal_gif": all_runs(rules.render.output.normal_gif),
    "rgb_mp4": all_runs(rules.render.output.rgb_mp4),
}


rule report_manifest:
    """The report's manifest: settings and, per run, the files the report reads (its inputs)."""
    input:
        **REPORT_RUN_INPUTS,
    output:
        out("manifests/report.json"),
    params:
        # as JSON, so a changed baseline or ablation reruns the manifest and so the report
        settings=REPORT_SETTINGS,
        # the config's claims (the report's Claims section; none: left out of the manifest), as JSON
        claims=json.dumps(CFG["claims"], sort_keys=True),
    log:
        log_path("report", "manifest"),
    localrule: True
    run:
        from nerfpipe.reporting import write_manifest  # here: pandas and scipy only when it runs

        write_manifest(output[0], params.settings, dict(input.items()), log[0], claims=params.claims)


rule report:
    """Comparison of every variant against the baseline: table, figures, HTML page.

    Reads only the files the manifest names; every file it writes is declared here (plus its
    hidden stage marker), built in a temporary folder and swapped in when complete.
    """
    input:
        manifest=rules.report_manifest.output[0],
        **REPORT_RUN_INPUTS,
    output:
        md=REPORT_OUT["md"],
        csv=report(REPORT_OUT["csv"], caption="../report/report_csv.rst", category="Comparison"),
        runs=report(REPORT_OUT["runs"], caption="../report/runs_csv.rst", category="Comparison"),
        paired=REPORT_OUT["paired"],
        ablations=REPORT_OUT["ablations"],
        concentration=REPORT_OUT["concentration"],
        html=report(
            REPORT_OUT["html"], caption="../report/report_html.rst", category="Comparison"
        ),
        figures=report(
            directory(REPORT_OUT["figures"]),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
        videos=directory(REPORT_OUT["videos"]),
    params:
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
        "nerfpipe report --manifest {input.manifest:q} --out {params.outdir:q} > {log:q} 2>&1"
