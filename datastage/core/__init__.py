"""Leaf helpers every stage of the pipeline shares, importing nothing else of datastage.

errors (typed, with exit codes; also public as ``datastage.errors``), fsutil (atomic writes,
space), units, digests, names (archive suffixes, reserved names), redact (secrets out of all
output), tomlio, writable, locks, progress (the Reporter), text (one-line messages).
"""
