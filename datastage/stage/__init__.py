"""Step 4 of the pipeline: files -> a dataset folder, put in place atomically and marked.

staging (the staging seam, ``Staging``: lock, partial folder, checks, marker, swap) and what it
runs: build (verified blobs -> files), marker (the records), verify (current? intact?),
ownership (what may be replaced; the swap), layout and links (checks of the finished tree).
Built on it: streaming (extract while downloading), folder / srctree (``stage SRC``); and pack.
"""
