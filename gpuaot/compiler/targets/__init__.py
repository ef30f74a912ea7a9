"""Code generation targets: the CPU (host object) and NVPTX (PTX, cubins)."""
