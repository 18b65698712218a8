"""Scene data: Blender-format loading (`blender`), embedded synthetic scenes (`synthetic`) and the
data stage (`prepare`)."""
