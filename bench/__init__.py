"""The benchmark (make bench) and the scripts it compares."""
