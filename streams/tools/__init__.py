"""Operator tools around the pipeline: producing files, the event generator, the demo."""
