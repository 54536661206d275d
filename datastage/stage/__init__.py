"""Step 4 of the pipeline: files -> a dataset folder, put in place atomically and marked.

staging (the staging seam: lock, partial folder, checks, marker, swap), streaming (extract
while downloading), layout and links (checks of the finished tree), folder / srctree / pack
(a user's own folder: ``stage SRC`` and ``pack``).
"""
