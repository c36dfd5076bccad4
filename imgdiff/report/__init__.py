"""Presentation: JSON documents, rich console rendering, progress on stderr.

The model never formats for a screen; these renderers do, side by side.
"""
