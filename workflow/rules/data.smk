rule data:
    """Write the normalised images and cameras of one scene (generating embedded scenes)."""
    input:
        dataset_files,
    output:
        directory(out("data/{scene}")),
    params:
        settings=scene_settings,
    log:
        log_path("data", "{scene}"),
    benchmark:
        benchmark_path("data", "{scene}")
    threads: stage_resource("data", "threads")
    resources:
        mem_mb=stage_resource("data", "mem_mb"),
        runtime=stage_resource("data", "runtime"),
    conda:
        "../envs/nerfpipe.yaml"
    shell:
        "nerfpipe data --out {output} --settings {params.settings:q} > {log:q} 2>&1"
