"""Step 1 of the pipeline: a target (name, path, URL) -> a validated ``Manifest``.

manifest (schema and validation), registry (finding manifests by name), oneliner (a URL or path
without a manifest), authoring (``datastage manifest`` / ``hash``).
"""
