"""Lowering: typed functions → LLVM IR through llvmlite (AST-aware layer over an AST-free emitter)."""
