"""The six stages of the pipeline, one module each, in the order the workflow runs them:

    data      a configured scene -> the normalised arrays of results/data/{scene}
    rays      the data -> the training-ray cache of results/rays/{scene}
    train     the ray cache -> results/train/{scene}/{variant}/seed{seed} (model.pt, logs)
    evaluate  a trained model on the test split -> metrics.json, per_image.csv, renders/
    render    a trained model on an orbit -> colour, depth and normal videos
    report    every run -> report.md, report.html, CSV tables, figures/

Each is a thin entry point that the CLI (nerfpipe.cli) calls. Stages never import each other: one
reads another's output through a building block (nerfpipe.data.splits, nerfpipe.raycache,
nerfpipe.inference, nerfpipe.reporting).
"""
