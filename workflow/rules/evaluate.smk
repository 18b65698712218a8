rule evaluate:
    """Render the full test split of one trained run and compute its metrics."""
    input:
        data=rules.data.output[0],
        model=rules.train.output.model,
        config=rules.train.output.config,
    output:
        metrics=out(f"eval/{RUN}/metrics.json"),
        per_image=out(f"eval/{RUN}/per_image.csv"),
        weights=out(f"eval/{RUN}/weights.json"),
        renders=directory(out(f"eval/{RUN}/renders")),
    params:
        train=lambda wildcards, input: parent_dir(input.model),
        outdir=lambda wildcards, output: parent_dir(output.metrics),
    log:
        log_path("evaluate", RUN),
    benchmark:
        benchmark_path("evaluate", RUN)
    threads: stage_resource("evaluate", "threads")
    resources:
        mem_mb=stage_resource("evaluate", "mem_mb"),
        runtime=stage_resource("evaluate", "runtime"),
        gpu=GPUS,
    conda:
        "../envs/nerfpipe.yaml"
    shell:
        "nerfpipe evaluate --data {input.data} --train {params.train:q} --out {params.outdir:q}"
        " --threads {threads} > {log:q} 2>&1"
