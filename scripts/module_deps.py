#!/usr/bin/env python3
"""Prints which top-level modules of src/ use which (`crate::X` paths,
test code excluded) and exits 1 if any two import each other, directly or
around a longer circle. Run: python3 scripts/module_deps.py"""
import pathlib, re, sys

src = pathlib.Path(__file__).resolve().parent.parent / "src"
mods = sorted({p.stem if p.is_file() else p.name for p in src.iterdir()} - {"lib", "main", "bin"})
deps = {m: set() for m in mods}
for m in mods:
    files = [src / f"{m}.rs"] if (src / f"{m}.rs").exists() else []
    if (src / m).is_dir():
        files += list((src / m).rglob("*.rs"))
    for f in files:
        if f.name == "tests.rs" or f.name.endswith("_tests.rs"):
            continue
        text = f.read_text().split("#[cfg(test)]\nmod tests")[0]
        # Code only: doc and line comments may name any module.
        text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
        for d in re.findall(r"crate::(\w+)", text):
            if d in deps and d != m:
                deps[m].add(d)
for m in mods:
    print(f"{m:12} -> {', '.join(sorted(deps[m])) or '-'}")

# Cycles: depth-first search over the graph.
state, stack, cycles = {}, [], []
def visit(m):
    state[m] = 1
    stack.append(m)
    for d in sorted(deps[m]):
        if state.get(d) == 1:
            cycles.append(stack[stack.index(d):] + [d])
        elif d not in state:
            visit(d)
    stack.pop()
    state[m] = 2
for m in mods:
    if m not in state:
        visit(m)
for c in cycles:
    print("circle:", " -> ".join(c))
sys.exit(1 if cycles else 0)
