"""Asset generators: the built-in head and the avatar builder (user-facing commands, not needed to render)."""
