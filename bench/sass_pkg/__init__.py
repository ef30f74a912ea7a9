"""Kernels only the SASS comparison reads (bench/gpu_sass.py): the shapes issue 13 names that
the CPU bench kernels and the GPU fixtures do not already cover."""
