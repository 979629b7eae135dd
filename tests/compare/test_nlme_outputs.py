"""A comparison on a NONMEM file with a grey-box model writes the PRED/IPRED table and the typical parameters."""
import pandas as pd

from pyro_node_uq.cli import main
from pyro_node_uq.data.pk import theophylline_table


def test_compare_on_a_nonmem_file_with_a_structure(tmp_path, capsys):
    csv = tmp_path / "theo.csv"
    theophylline_table("mg").to_csv(csv, index=False)
    out = tmp_path / "out"
    rc = main(["compare", "--data", str(csv), "--structure", "one_compartment_oral", "--methods", "map",
               "--time-fraction", "0.67", "--quick", "--no-progress", "--out", str(out), "--num-samples", "8", "--set", "map.num_steps=50"])
    assert rc == 0, capsys.readouterr().err
    table = pd.read_csv(out / "nlme" / "map_table.csv")
    assert {"SPLIT", "ID", "TIME", "DV", "PRED", "IPRED", "RES", "IRES", "IWRES"} <= set(table.columns)
    assert set(table.SPLIT) == {"train", "extrapolation"}
    params = pd.read_csv(out / "nlme" / "map_parameters.csv").set_index("parameter")
    assert {"CL_pop", "V_pop", "ka_pop", "shrinkage[CL]"} <= set(params.index)
    report = (out / "report.md").read_text()
    assert "typical parameters" in report and "PRED-type" in report
    npde = pd.read_csv(out / "nlme" / "map_npde.csv")
    assert {"SPLIT", "ID", "TIME", "DV", "NPDE", "PD"} <= set(npde.columns) and len(npde) == len(table[
        table.SPLIT == "train"]) + int((npde.SPLIT == "test").sum())
    tests = pd.read_csv(out / "nlme" / "map_npde_tests.csv").set_index("SPLIT")
    assert set(tests.index) == {"train", "test"} and ((tests.p_global >= 0) & (tests.p_global <= 1)).all()
    for name in ("vpc_map_train.png", "vpc_map_test.png", "eta_covariates_map.png"):
        assert (out / "figures" / name).stat().st_size > 10000 and f"figures/{name}" in report
    assert "## NPDE" in report and "| map | fitted units | 72 |" in report and "| map | new units |" in report


def test_bad_structure_arguments(tmp_path):
    import pytest

    csv = tmp_path / "theo.csv"
    theophylline_table("mg").to_csv(csv, index=False)
    with pytest.raises(SystemExit, match="--structure: .*one_compartment_oral"):
        main(["compare", "--data", str(csv), "--structure", "three_compartment", "--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="--structure: .*doses go into compartments"):
        main(["compare", "--data", str(csv), "--structure", "one_compartment_iv", "--out", str(tmp_path / "b")])
    with pytest.raises(SystemExit, match="--correction"):
        main(["compare", "--data", str(csv), "--correction", "wide", "--out", str(tmp_path / "c")])


def test_every_method_writes_its_inference_data_and_nlme_outputs(tmp_path, capsys):
    """On a NONMEM file no method wrote InferenceData (the new subjects' effects were refused as missing sites),
    and the sample-based methods (ensemble, NUTS, SVGD, LangevinKernel) wrote no PRED/IPRED table, typical
    parameters, NPDE or VPC (their results did not know the units they were fitted on)."""
    import arviz as az

    csv = tmp_path / "theo.csv"
    theophylline_table("mg").to_csv(csv, index=False)
    out = tmp_path / "out"
    methods = ["map", "autonormal", "ensemble", "nuts", "svgd", "langevin_kernel"]
    rc = main(["compare", "--data", str(csv), "--methods", ",".join(methods), "--quick", "--no-progress",
               "--out", str(out), "--num-samples", "8", "--set", "map.num_steps=20", "--set", "autonormal.num_steps=5",
               "--set", "ensemble.num_members=2", "--set", "nuts.num_samples=4", "--set", "nuts.warmup_steps=4",
               "--set", "svgd.num_steps=3", "--set", "langevin_kernel.num_samples=2",
               "--set", "langevin_kernel.warmup_steps=2"])
    assert rc == 0, capsys.readouterr().err
    report = (out / "report.md").read_text()
    assert "not written" not in report, [line for line in report.splitlines() if "not written" in line]
    for name in methods:
        idata = az.from_netcdf(out / "idata" / f"{name}.nc")
        assert idata.posterior["eta_z_new"].sizes["trajectory"] == 3 and "eta_z" not in idata.posterior, name
        assert (out / "nlme" / f"{name}_table.csv").exists() and (out / "nlme" / f"{name}_npde.csv").exists(), name
