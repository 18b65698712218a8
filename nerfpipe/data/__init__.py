"""Scene data: Blender-format loading (`blender`, built on `transforms`, `frame_files`, `downscale`
and `checks`), the embedded synthetic scenes (`synthetic`, built on `synthetic_scenes`,
`synthetic_primitives`, `synthetic_shading` and `synthetic_trace`) and the reader of the data
stage's output (`splits`). The data stage itself is nerfpipe.stages.data."""
