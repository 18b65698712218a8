rule evaluate:
    """Render the full test split of one trained run and compute its metrics."""
    input:
        data=rules.data.output[0],
        model=rules.train.output.model,
        config=rules.train.output.config,
    output:
        **{key: out(f"eval/{RUN}/{name}") for key, name in layout.EVAL_FILES.items()},
        renders=directory(out(f"eval/{RUN}/{layout.EVAL_RENDERS}")),
    params:
        settings=evaluate_settings,
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
        " --settings {params.settings:q} --threads {threads} > {log:q} 2>&1"
