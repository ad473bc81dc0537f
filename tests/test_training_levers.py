"""The training settings' speed levers: ``compile`` (torch.compile of the loss step) trains as the
eager step does within float tolerance, keeps run ids and is recorded in the environment;
``precision: bfloat16`` (autocast) changes the losses a little, keeps the parameters float32,
enters the run id and the record; default run ids are those of the versions before both."""

import hashlib
from pathlib import Path

import pytest
import torch
import yaml
from torch import distributions as D
from torch import nn
from typer.testing import CliRunner

from mmbench import api
from mmbench.cli import app
from mmbench.store import RunStore
from mmbench.trainer import CompileError, TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "name": "tiny",
    "seeds": [0],
    "data": {"name": "synthetic", "options": {"n_train": 200, "n_valid": 100, "n_test": 100}},
    "train": {"epochs": 2, "batch_size": 50, "lr": 1.0e-3},
    "models": [{"name": "mxo", "params": {"hidden": [8], "latent_dim": 4}}],
    "references": [],
}
# Written by mmbench before the levers existed (commit a62e31f): TINY's run id, and the sha256 of
# the run ids of suites/xrmb_omega.yaml (360 runs, in the suite's order, joined by spaces).
TINY_ID = "69a06346b181"
XRMB_OMEGA_IDS = "61a0efcc91a81aa9"


class TinyVAE(nn.Module):
    """x -> Normal(z | W x, softplus) -> Normal(x | V z, 1), with dropout on x and the KL weight
    annealed by the training's progress: random draws and a per-step value in the loss step."""

    def __init__(self, dim: int = 6, latent: int = 2):
        super().__init__()
        self.encoder = nn.Linear(dim, 2 * latent)
        self.decoder = nn.Linear(latent, dim)
        self.dropout = nn.Dropout(0.2)

    def loss(self, batch, progress):
        x = batch["x"]
        mean, raw_scale = self.encoder(self.dropout(x)).chunk(2, dim=-1)
        posterior = D.Normal(mean, nn.functional.softplus(raw_scale) + 1e-3)
        z = posterior.rsample()
        nll = -D.Normal(self.decoder(z), 1.0).log_prob(x).sum(-1).mean()
        kl = D.kl_divergence(posterior, D.Normal(0.0, 1.0)).sum(-1).mean()
        weight = 1.0 if progress is None else min(1.0, 0.5 + progress.fraction)
        return nll + weight * kl, {"nll": nll, "kl": kl}


def fit_tiny_vae(**settings) -> tuple[TinyVAE, list[dict[str, float]]]:
    torch.manual_seed(0)
    data = {"x": torch.randn(90, 6) * 2 + 1}
    module = TinyVAE()
    config = TrainConfig(epochs=3, batch_size=32, lr=1e-2, patience=None, seed=3, **settings)
    report = Trainer(config).fit(module, data, data)
    return module, report.history


def test_a_compiled_fit_trains_as_the_eager_one_within_float_tolerance():
    eager, eager_history = fit_tiny_vae()
    compiled, compiled_history = fit_tiny_vae(compile=True)
    assert len(compiled_history) == len(eager_history) == 3
    for ours, theirs in zip(compiled_history, eager_history):
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-5), key
    for (name, ours), theirs in zip(compiled.named_parameters(), eager.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5, msg=name)


def test_a_bfloat16_fit_is_close_to_the_float32_one_but_not_equal():
    _, full_history = fit_tiny_vae()
    half, half_history = fit_tiny_vae(precision="bfloat16")
    assert all(p.dtype == torch.float32 for p in half.parameters())
    losses = torch.tensor([row["loss"] for row in full_history])
    half_losses = torch.tensor([row["loss"] for row in half_history])
    # bfloat16 keeps 8 bits of mantissa: a relative error of a few 1e-3 per operation
    torch.testing.assert_close(half_losses, losses, rtol=0.05, atol=0.05)
    assert not torch.equal(half_losses, losses)


def test_a_loss_step_that_cannot_be_compiled_is_one_error_naming_the_network():
    import torch._dynamo
    import torch._inductor.config as inductor

    torch._dynamo.reset()  # no compiled code kept from another test
    no_compiler = {"cpp.cxx": ("no-such-compiler",), "fx_graph_cache": False}
    with inductor.patch(no_compiler), pytest.raises(CompileError) as raised:
        fit_tiny_vae(compile=True)
    torch._dynamo.reset()
    message = str(raised.value)
    assert message.startswith("torch.compile of TinyVAE's loss step failed")
    assert "no-such-compiler" in message and "without compiling" in message


def test_compile_keeps_the_run_ids_and_is_recorded_in_the_environment(tmp_path):
    eager = api.run_suite(TINY, tmp_path / "eager", progress=False)
    suite = tmp_path / "tiny.yaml"
    suite.write_text(yaml.safe_dump(TINY))
    compiling = ["run", str(suite), "--compile", "--results", str(tmp_path / "compiled")]
    ran = CliRunner().invoke(app, compiling)
    assert ran.exit_code == 0, ran.output
    compiled = RunStore(tmp_path / "compiled").records()
    assert [r.run_id for r in compiled] == [r.run_id for r in eager] == [TINY_ID]
    (eager_record,), (compiled_record,) = eager, compiled
    assert compiled_record.ok and compiled_record.environment["compile"] is True
    assert eager_record.environment["compile"] is False
    assert "compile" not in compiled_record.config.to_json()["train"]
    assert compiled_record.metrics == pytest.approx(eager_record.metrics, rel=1e-4, abs=1e-4)


def test_bfloat16_runs_have_their_own_ids_and_say_so_in_their_records(tmp_path):
    full = api.run_suite(TINY, tmp_path / "float32", progress=False)
    half = api.run_suite(
        TINY, tmp_path / "bfloat16", overrides=["train.precision=bfloat16"], progress=False
    )
    (full_record,), (half_record,) = full, half
    assert half_record.ok and half_record.run_id != full_record.run_id
    assert half_record.config.to_json()["train"]["precision"] == "bfloat16"
    assert "precision" not in full_record.config.to_json()["train"]
    full_loss, half_loss = (r.fit.history[-1]["loss"] for r in (full_record, half_record))
    assert half_loss == pytest.approx(full_loss, rel=0.05) and half_loss != full_loss


def suite_ids(suite, overrides: list[str]) -> list[str]:
    return [run.run_id for run in api.select_runs(api.as_suite(suite, overrides))]


@pytest.mark.parametrize("overrides", [[], ["train.compile=true"]])
def test_default_run_ids_are_those_written_before_the_levers(overrides):
    assert suite_ids(TINY, overrides) == [TINY_ID]
    ids = suite_ids(REPO / "suites" / "xrmb_omega.yaml", overrides)
    assert len(ids) == 360
    assert hashlib.sha256(" ".join(ids).encode()).hexdigest()[:16] == XRMB_OMEGA_IDS
