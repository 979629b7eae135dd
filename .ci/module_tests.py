"""How many package modules have a test file of their name (pyro_node_uq/a/b.py -> tests/a/test_b.py).

Usage: python .ci/module_tests.py [--list] [--min PERCENT]   (exit status 1 below PERCENT)
"""
import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the modules without one")
    parser.add_argument("--min", type=float, default=0.0, help="fail below this percentage")
    args = parser.parse_args()
    package = ROOT / "pyro_node_uq"
    modules = sorted(p for p in package.rglob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    lacking = [m.relative_to(package) for m in modules
               if not (ROOT / "tests" / m.relative_to(package).parent / f"test_{m.name}").exists()]
    share = 100 * (len(modules) - len(lacking)) / len(modules)
    print(f"{len(modules) - len(lacking)} of {len(modules)} modules ({share:.0f}%) have a test file of their name")
    if args.list:
        print("\n".join(f"  {m}" for m in lacking))
    return 1 if share < args.min else 0


if __name__ == "__main__":
    sys.exit(main())
