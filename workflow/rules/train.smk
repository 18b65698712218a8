rule train:
    """Train one variant on one scene with one seed.

    ckpt/ (resume checkpoints) is deliberately not an output: Snakemake deletes the
    outputs of a failed job, and the checkpoints must survive that so a rerun resumes.
    """
    input:
        data=rules.data.output[0],
        rays=rules.rays.output[0],
    output:
        **{key: out(f"train/{RUN}/{name}") for key, name in layout.TRAIN_FILES.items()},
        **({"tb": directory(out(f"train/{RUN}/{layout.TENSORBOARD_DIR}"))} if CFG["tensorboard"] else {}),
    params:
        settings=variant_settings,
        runtime=train_runtime,
        # Derived from `output` like runtime: switching TensorBoard on or off retrains nothing.
        tensorboard=lambda wildcards, output: "--tensorboard" if "tb" in output.keys() else "--no-tensorboard",
        outdir=lambda wildcards, output: parent_dir(output.model),
    log:
        log_path("train", RUN),
    benchmark:
        benchmark_path("train", RUN)
    threads: stage_resource("train", "threads")
    resources:
        mem_mb=stage_resource("train", "mem_mb"),
        runtime=stage_resource("train", "runtime"),
        gpu=GPUS,
    conda:
        "../envs/nerfpipe.yaml"
    shell:
        "nerfpipe train --data {input.data} --rays {input.rays} --out {params.outdir:q}"
        " --settings {params.settings:q} --runtime {params.runtime:q} --threads {threads}"
        " {params.tensorboard} --job-mem-mb {resources.mem_mb} > {log:q} 2>&1"
