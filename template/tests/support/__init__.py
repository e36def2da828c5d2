"""Helpers the tests import: `from support.in_process import serving`."""
