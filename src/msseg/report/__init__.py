"""Reports: the QC page a rater works in, and the dataset report (counts, lesion volumes)."""
