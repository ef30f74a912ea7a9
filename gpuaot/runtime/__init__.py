"""Run time: load a bundle, launch kernels on the CPU or GPU, call host functions."""
