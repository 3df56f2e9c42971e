"""The activation study (pipelines/activation_study/): its cells, and the table and figures that
compare them."""
