"""Image readers/writers (floor 2: depends only on paths/configuration/errors/file_io, never on utilities)."""
