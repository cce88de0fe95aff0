"""Dash pages, layout components, map figures, themes and UI strings."""
