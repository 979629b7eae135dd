"""Pyro's own guide and MCMC test files with this package's guides and kernel added: pass/fail counts per class.

Copies the ``tests/`` folder of a Pyro source checkout into a temporary folder and adds, without changing any
assertion:

- to every parametrised list of ``tests/infer/test_autoguide.py`` that holds ``AutoDiagonalNormal``: AutoLangevin
  with ``score="learned"``, ``"hybrid"`` and ``"exact"``, and AutoLayerwise (its first latent site stochastic,
  every other a point estimate);
- to the kernel lists of ``tests/infer/mcmc/test_mcmc_api.py`` that hold ``NUTS``: LangevinKernel;
- copies of ``tests/infer/mcmc/test_hmc.py`` and ``test_nuts.py`` in which ``HMC`` and ``NUTS`` are LangevinKernel
  (options only HMC/NUTS have, such as ``jit_compile`` or ``max_tree_depth``, are dropped).

Then it runs pytest on those files and prints, for each class (Pyro's own included as controls), the number of
cases passed, failed, not applicable and skipped, and the failed case ids.  A failure is "not applicable" when
it matches an entry of ``NOT_APPLICABLE`` (the class, the test, a text of its message and the reason: e.g. a
closed-form ``get_posterior``, Pyro's private ``_loc_scale``); those are listed apart with their reasons.

Usage::

    python benchmarks/pyro_suite.py --pyro-src /path/to/pyro   # a checkout of github.com/pyro-ppl/pyro
    python benchmarks/pyro_suite.py --pyro-src ... -k test_null_model_with_hook   # one test

The Pyro checkout should match the installed ``pyro-ppl`` (tests newer than the install may use newer API).
"""
import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

SHIM = '''"""This package's classes under the names the patched Pyro tests use."""
import pyro_node_uq.infer as pnu
from pyro_node_uq.infer import AutoLangevin, AutoLayerwise, LangevinKernel

_HMC_ONLY = ("jit_compile", "ignore_jit_warnings", "max_tree_depth", "num_steps", "trajectory_length",
             "adapt_mass_matrix", "use_multinomial_sampling", "dense_mass")


class AutoLangevinLearned(AutoLangevin):
    def __init__(self, model, **kwargs):
        super().__init__(model, score="learned", **kwargs)


class AutoLangevinHybrid(AutoLangevin):
    def __init__(self, model, **kwargs):
        super().__init__(model, score="hybrid", **kwargs)


class AutoLangevinExact(AutoLangevin):
    def __init__(self, model, **kwargs):
        super().__init__(model, score="exact", **kwargs)


class AutoLayerwiseFirst(AutoLayerwise):
    """The first latent site (trace order) stochastic (AutoNormal), every other a point estimate."""

    def __init__(self, model, **kwargs):
        super().__init__(model, stochastic="*", **kwargs)

    def _resolve(self, latent):
        return latent[:1], latent[1:]


def LangevinKernelAsHMC(model=None, potential_fn=None, **kwargs):
    return LangevinKernel(model, potential_fn, **{k: v for k, v in kwargs.items() if k not in _HMC_ONLY})


LangevinKernelAsHMC.__name__ = "LangevinKernel"
'''

GUIDES = ("AutoLangevinLearned", "AutoLangevinHybrid", "AutoLangevinExact", "AutoLayerwiseFirst")


def patch_autoguide(text):
    out, body = [], False
    for line in text.splitlines():
        out.append(line)
        body = body or line.startswith(("@", "def "))  # past the imports
        m = re.fullmatch(r"(\s+)AutoDiagonalNormal,\s*", line)
        if m and body:
            out.extend(f"{m.group(1)}{name}," for name in GUIDES)
    text = "\n".join(out) + "\n"
    return text.replace("import pyro\n", "import pyro\nfrom tests._pnu_shim import *  # noqa\n", 1)


def patch_mcmc_api(text):
    out = []
    for line in text.splitlines():
        out.append(line)
        m = re.fullmatch(r"(\s+)\(NUTS, (.*)\),\s*", line)
        if m:
            options = "{}" if m.group(2).startswith("{") else m.group(2)
            out.append(f"{m.group(1)}(LangevinKernelAsHMC, {options}),")
    text = "\n".join(out) + "\n"
    return text.replace("import pyro\n", "import pyro\nfrom tests._pnu_shim import LangevinKernelAsHMC\n", 1)


def patch_as_langevin(text):
    """HMC and NUTS rebound to the Langevin kernel after the file's own imports."""
    text = text.replace("\nlogger = logging.getLogger", "\nfrom tests._pnu_shim import LangevinKernelAsHMC as HMC  # noqa\n"
                        "NUTS = HMC\nlogger = logging.getLogger", 1)
    return text.replace("from .test_hmc import", "from .test_hmc_lk import")


def build(pyro_src, dest):
    shutil.copytree(os.path.join(pyro_src, "tests"), os.path.join(dest, "tests"))
    for name in ("setup.cfg", "pyproject.toml"):
        if os.path.exists(os.path.join(pyro_src, name)):
            shutil.copy(os.path.join(pyro_src, name), dest)
    t = os.path.join(dest, "tests")
    with open(os.path.join(t, "_pnu_shim.py"), "w") as f:
        f.write(SHIM)
    files = []
    for rel, patch, new in (("infer/test_autoguide.py", patch_autoguide, None),
                            ("infer/mcmc/test_mcmc_api.py", patch_mcmc_api, None),
                            ("infer/mcmc/test_hmc.py", patch_as_langevin, "infer/mcmc/test_hmc_lk.py"),
                            ("infer/mcmc/test_nuts.py", patch_as_langevin, "infer/mcmc/test_nuts_lk.py")):
        with open(os.path.join(t, rel)) as f:
            text = patch(f.read())
        with open(os.path.join(t, new or rel), "w") as f:
            f.write(text)
        files.append(os.path.join("tests", new or rel))
    return files


#: failures that test something these classes do not have by design: (class name prefix, test name prefix, text the failure
#: message must contain, why).  A failure matching one is reported apart, with its reason; any other is a defect.
NOT_APPLICABLE = (
    ("AutoLangevin", "test_quantiles[", "has no closed form",
     ("the test calls get_posterior() whenever the class has one (every AutoContinuous); the Langevin guide's "
      "posterior is an ensemble with no closed form")),
    ("AutoLangevinHybrid", "", "torch.jit.trace cannot",
     "JIT: the hybrid drift differentiates the model inside the guide, which torch.jit.trace cannot record"),
    ("AutoLangevinExact", "", "torch.jit.trace cannot",
     "JIT: the exact drift differentiates the model inside the guide, which torch.jit.trace cannot record"),
    ("AutoLangevinExact", "test_init_loc_fn[", "vs",
     ("score='exact' moves the untrained ensemble by the model's gradient (exact weight 1), so its median is not "
      "the reference mean; the reference mean is the init values")),
    ("AutoLayerwiseFirst", "test_init_scale[", "_loc_scale", "private _loc_scale of Pyro's AutoContinuous"),
    ("AutoLayerwiseFirst", "test_scores[", "_latent",
     ("single-site model: the layer-wise guide needs a point site beside the stochastic one (and, like "
      "AutoNormal, has no _<name>_latent site)")),
    ("AutoLayerwiseFirst", "test_median[", "vs 1.0",
     ("a point-estimated LogNormal site: its value is the posterior mode exp(-1), not the median (the test "
      "expects that of AutoDelta)")),
    ("AutoLayerwiseFirst", "test_quantiles[", "assert",
     "point-estimated sites have no spread (Pyro leaves AutoDelta out of this test)"),
    ("AutoLayerwiseFirst", "test_sphere_helpful_error[", "DID NOT RAISE",
     ("the spherical site is a point estimate (AutoDelta), well defined on the sphere (Pyro leaves AutoDelta "
      "out of this test)")),
)


def not_applicable(who, case, message):
    """The reason a failure is not applicable, or ``None``."""
    for cls, prefix, text, why in NOT_APPLICABLE:
        if who.startswith(cls) and case.startswith(prefix) and text in message:
            return why
    return None


def classify(case, file):
    """The class a test case exercises."""
    if file.endswith("_lk"):
        return "LangevinKernel"
    for name in GUIDES + ("LangevinKernel",):
        if name in case:
            return name
    return "Pyro's own"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pyro-src", required=True, help="a checkout of github.com/pyro-ppl/pyro")
    parser.add_argument("-k", default=None, help="pytest -k expression")
    parser.add_argument("--timeout", type=int, default=3000, help="seconds for the whole run")
    parser.add_argument("--keep", default=None, help="build into this folder and keep it")
    parser.add_argument("--only", default=None, help="comma-separated file names (test_autoguide.py,...)")
    parser.add_argument("--package-src", default=os.getcwd(), help="the folder holding pyro_node_uq (default: "
                        "the current folder)")
    parser.add_argument("--controls", action="store_true", help="also run the unpatched test_hmc.py and "
                        "test_nuts.py (Pyro's HMC and NUTS; slow)")
    args = parser.parse_args()
    dest = args.keep or tempfile.mkdtemp(prefix="pyro_suite_")
    files = build(args.pyro_src, dest)
    if args.controls:
        files += [os.path.join("tests", "infer/mcmc", name) for name in ("test_hmc.py", "test_nuts.py")]
    if args.only:
        keep = args.only.split(",")
        files = [f for f in files if os.path.basename(f) in keep]
    report = os.path.join(dest, "report.xml")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--junitxml", report,
           "-W", "ignore"] + files + (["-k", args.k] if args.k else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([dest, args.package_src, os.environ.get("PYTHONPATH", "")]))
    subprocess.run(cmd, check=False, cwd=dest, env=env, timeout=args.timeout)
    counts = collections.defaultdict(collections.Counter)
    failed, inapplicable = collections.defaultdict(list), collections.defaultdict(list)
    for case in ET.parse(report).getroot().iter("testcase"):
        file = case.get("classname", "").replace(".", "/")
        who = classify(case.get("name", ""), file)
        file = file.split("/")[-1]
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                message = child.get("message") or ""
                msg = message.splitlines()
                line = f"{file}::{case.get('name')}: {msg[0][:160] if msg else ''}"
                why = not_applicable(who, case.get("name"), message)
                outcome = "failed" if why is None else "n/a"
                (failed[who] if why is None else inapplicable[(who, why)]).append(line)
            elif child.tag == "skipped":
                outcome = "skipped"
        counts[who][outcome] += 1
    for who in sorted(counts):
        c = counts[who]
        print(f"{who:22s} passed {c['passed']:4d}  failed {c['failed']:4d}  not applicable {c['n/a']:4d}  "
              f"skipped {c['skipped']:4d}")
    for who, why in sorted(inapplicable):
        print(f"\nnot applicable, {who} ({why}):")
        for line in inapplicable[(who, why)]:
            print("  " + line)
    for who in sorted(failed):
        print(f"\nfailed, {who}:")
        for line in failed[who]:
            print("  " + line)
    if not args.keep:
        shutil.rmtree(dest, ignore_errors=True)


if __name__ == "__main__":
    main()
