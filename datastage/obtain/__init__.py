"""Step 2 of the pipeline: a manifest's file entry -> a verified blob in the cache.

cache (content-addressed store), pins (trust on first use), download (one file's life from
"not cached" to "verified"), plan (the segment plan of one file), transfer (segmented transfer
over several connections), retrying (the retry policy), persistent (persistent tier and
read-only folders), shared (an S3 prefix shared by machines), usage (which dataset used which
blob: ``cache ls/rm/prune``).
"""
