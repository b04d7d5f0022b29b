"""Runs once recorded: status, entities, media by run id, execution history, stats and exports."""
