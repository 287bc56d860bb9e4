"""Data layer: table schema, simulator, importers and daily batches."""
