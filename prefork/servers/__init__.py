"""Server modes: threaded (workers = 0) now; the multi-processing master joins them."""
