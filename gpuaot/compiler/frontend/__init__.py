"""Frontend: a function's AST and argument types → a typed function (SPEC §2 semantics)."""
