rule render:
    """Orbit videos (RGB and depth) of one trained run."""
    input:
        data=rules.data.output[0],
        model=rules.train.output.model,
        config=rules.train.output.config,
        evaluated=evaluation_before_render,
    output:
        rgb_mp4=report(
            out(f"render/{RUN}/{layout.RENDER_FILES['rgb_mp4']}"),
            caption="../report/orbit.rst",
            category="Orbit videos",
            subcategory="{scene}",
            labels={"scene": "{scene}", "variant": "{variant}", "seed": "{seed}", "kind": "rgb (mp4)"},
        ),
        rgb_gif=report(
            out(f"render/{RUN}/{layout.RENDER_FILES['rgb_gif']}"),
            caption="../report/orbit.rst",
            category="Orbit videos",
            subcategory="{scene}",
            labels={"scene": "{scene}", "variant": "{variant}", "seed": "{seed}", "kind": "rgb"},
        ),
        depth_gif=report(
            out(f"render/{RUN}/{layout.RENDER_FILES['depth_gif']}"),
            caption="../report/orbit_depth.rst",
            category="Orbit videos",
            subcategory="{scene}",
            labels={"scene": "{scene}", "variant": "{variant}", "seed": "{seed}", "kind": "depth"},
        ),
        normal_gif=report(
            out(f"render/{RUN}/{layout.RENDER_FILES['normal_gif']}"),
            caption="../report/orbit_normal.rst",
            category="Orbit videos",
            subcategory="{scene}",
            labels={"scene": "{scene}", "variant": "{variant}", "seed": "{seed}", "kind": "normals"},
        ),
    params:
        settings=render_settings,
        train=lambda wildcards, input: parent_dir(input.model),
        outdir=lambda wildcards, output: parent_dir(output.rgb_mp4),
    log:
        log_path("render", RUN),
    benchmark:
        benchmark_path("render", RUN)
    threads: stage_resource("render", "threads")
    resources:
        mem_mb=stage_resource("render", "mem_mb"),
        runtime=stage_resource("render", "runtime"),
        gpu=GPUS,
    conda:
        "../envs/nerfpipe.yaml"
    shell:
        "nerfpipe render --data {input.data} --train {params.train:q} --out {params.outdir:q}"
        " --settings {params.settings:q} --threads {threads} > {log:q} 2>&1"
