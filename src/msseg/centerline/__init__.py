"""Stage 1 of the two-stage framework: where the cord is (heatmap -> optimal centerline)."""
