rule rays:
    """Precompute the training rays of one scene (memory-mappable arrays)."""
    input:
        data=rules.data.output[0],
    output:
        directory(out("rays/{scene}")),
    log:
        log_path("rays", "{scene}"),
    benchmark:
        benchmark_path("rays", "{scene}")
    threads: stage_resource("rays", "threads")
    resources:
        mem_mb=stage_resource("rays", "mem_mb"),
        runtime=stage_resource("rays", "runtime"),
    conda:
        "../envs/nerfpipe.yaml"
    shell:
        "nerfpipe rays --data {input.data} --out {output} > {log:q} 2>&1"
