# nerfpipe: every configured scene through every configured variant and seed,
#   data -> rays -> train -> evaluate -> render -> report
# Run:   snakemake --cores N --workflow-profile workflow/profiles/local [--configfile config/smoke.yaml]
# A --configfile replaces config/config.yaml instead of being merged into it (scenes and
# variants are name-keyed maps, so a merge would silently keep the default ones).
from snakemake.utils import min_version, validate

min_version("9.0")

if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# common.smk checks the config first (readable errors naming the key, cross-checks such as
# unknown or cyclic `base:`); Snakemake's validation then fills the defaults into `config`.
include: "workflow/rules/common.smk"


validate(config, "workflow/schemas/config.schema.yaml", set_default=True)


include: "workflow/rules/data.smk"
include: "workflow/rules/rays.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/render.smk"
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


localrules:
    all,
    report,


rule all:
    default_target: True
    input:
        rules.report.output,
        all_runs(rules.evaluate.output.metrics),
        all_runs(rules.render.output.rgb_mp4),
