"""Geography: boundaries, grid cells, CRS conversion, point location and spatial queries."""
