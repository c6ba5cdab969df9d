"""Images: content store, snapshots, sources of images (import, load, pull, build)."""
