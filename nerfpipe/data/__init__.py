"""Scene data: Blender-format loading (`blender`), the embedded synthetic scenes (`synthetic`) and
the reader of the data stage's output (`splits`). The data stage itself is nerfpipe.stages.data."""
