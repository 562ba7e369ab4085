"""Executors beyond the local one: where a trial's steps run."""
