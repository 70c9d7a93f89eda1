"""Experiments of SCIENCE §6: each is a function from a preset to a results folder."""
