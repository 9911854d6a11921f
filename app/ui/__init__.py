"""Hearth's Qt front: windows, widgets, thin Qt models over engine data, the engine thread."""
