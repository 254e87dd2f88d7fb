"""msseg: spinal cord and MS lesion segmentation and evaluation."""
__version__ = "0.1.0"
