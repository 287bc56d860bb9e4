"""Prefect flows: thin orchestration over the stage functions in liveloop (paths and versions in, paths out)."""
