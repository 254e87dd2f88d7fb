"""Datasets: indexing (BIDS or plain folders), patient-level splits, lesion synthesis into real
scans, domain-randomised synthetic spines, nnU-Net export."""
