"""Reports: static QC pages."""
