"""Figures, overlays, palettes, videos and widgets. Each topic lives in its own module; import from there."""
