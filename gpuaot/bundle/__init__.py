"""The bundle: host .so with the manifest and the embedded fatbinary."""
