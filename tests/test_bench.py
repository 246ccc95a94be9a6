"""The likelihood benchmark's tooling: one smoke run of bench/likelihood.py on real MNIST, and
the paired comparison bench/likelihood_table.py makes of the JSON lines."""
import json
import subprocess
import sys

import numpy as np
import tensorflow as tf
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import format_latency  # noqa: E402
import likelihood_table  # noqa: E402
import serving  # noqa: E402


def run_line(model, data, log_px, batch_norm=False, **extra):
    log_px = np.asarray(log_px, dtype=float)
    return {"model": model, "data": data, "batch_norm": batch_norm, "epochs_run": 3,
            "train_seconds": 90.0, "test_nll": -log_px.mean(),
            "test_nll_stderr": log_px.std(ddof=1) / np.sqrt(len(log_px)),
            "test_neg_elbo": 100.0, "active_units": [5], "published_nll": None,
            "test_log_px": log_px.tolist(), **extra}


def test_table_compares_each_model_with_both_baselines_pair_by_pair():
    rng = np.random.default_rng(0)
    base = -rng.uniform(80, 120, size=400)          # images differ by tens of nats...
    base_bn = base + 1.0
    runs = [run_line("vae", "mnist-dynamic", base),
            run_line("vae", "mnist-dynamic", base_bn, batch_norm=True),
            # ...while the models differ by a nat, with a little noise per image.
            run_line("iaf", "mnist-dynamic", base + 0.5 + rng.normal(0, 0.1, 400)),
            run_line("hvae", "mnist-dynamic", base_bn + 2.0 + rng.normal(0, 0.1, 400),
                     batch_norm=True)]
    rows = {row.split(" | ")[1]: row.split(" | ") for row in likelihood_table.rows(runs)}
    iaf, hvae = rows["VAE + IAF posterior"], rows["VAE, 2 layers (HVAE), batch norm"]

    def difference(cell):
        mean, stderr = (float(v) for v in cell.split(" ± "))
        return mean, stderr

    # Columns 5 and 6: against the plain VAE and against the batch-norm VAE. A difference of
    # two unpaired means would carry a standard error of about 1.6 nats here.
    for row, expected in ((iaf, (-0.5, 0.5)), (hvae, (-3.0, -2.0))):
        for cell, value in zip(row[5:7], expected):
            mean, stderr = difference(cell)
            assert mean == pytest.approx(value, abs=0.03) and stderr <= 0.01
    plain, with_bn = rows["VAE, 1 layer"], rows["VAE, 1 layer, batch norm"]
    assert plain[5] == "—" and difference(plain[6])[0] == pytest.approx(1.0, abs=1e-6)
    assert with_bn[6] == "—" and difference(with_bn[5])[0] == pytest.approx(-1.0, abs=1e-6)


def test_table_refuses_runs_on_different_test_images():
    runs = [run_line("vae", "mnist-static", [-90.0, -95.0, -99.0]),
            run_line("iaf", "mnist-static", [-90.0, -95.0])]
    with pytest.raises(ValueError, match="different images"):
        likelihood_table.rows(runs)
    # As many images, but other ones (or another binarization): the fingerprints differ.
    runs = [run_line("vae", "mnist-static", [-90.0, -95.0], test_images_sha1="a" * 40),
            run_line("iaf", "mnist-static", [-91.0, -94.0], test_images_sha1="b" * 40)]
    with pytest.raises(ValueError, match="different images"):
        likelihood_table.rows(runs)
    runs[1]["test_images_sha1"] = "a" * 40
    assert len(likelihood_table.rows(runs)) == 2


def test_likelihood_smoke_run_prints_one_consistent_json_line(shared_data):
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "likelihood.py"), "--model", "hvae",
         "--batch-norm", "--quick"], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    run = json.loads(lines[0])
    assert run["registry_name"] == "hvae" and run["batch_norm"] is True
    assert run["config"]["batch_norm"] is True and run["config"]["latent_dims"] == [100, 50]
    assert run["k"] == 100 and run["test_examples"] == 200 == len(run["test_log_px"])
    assert len(run["test_images_sha1"]) == 40
    assert run["test_nll"] == pytest.approx(-np.mean(run["test_log_px"]), abs=0.01)
    # The importance-sampled estimate is a tighter bound than the ELBO (on average).
    assert run["test_nll"] < run["test_neg_elbo"]
    assert 0 < run["kl_warmup_steps"] <= run["steps"]
    assert len(run["active_units"]) == 2


def test_against_prints_each_runs_paired_difference_from_another_baseline(tmp_path):
    rng = np.random.default_rng(1)
    base = -rng.uniform(80, 120, size=300)
    results, baseline = tmp_path / "runs.jsonl", tmp_path / "longer_vae.jsonl"
    results.write_text("\n".join(json.dumps(run_line(*args)) for args in [
        ("hvae", "mnist-dynamic", base + 0.9 + rng.normal(0, 0.1, 300)),
        ("iaf", "mnist-dynamic", base - 0.4 + rng.normal(0, 0.1, 300)),
        ("iaf", "mnist-static", base[:10])]) + "\n")
    baseline.write_text(json.dumps(run_line("vae", "mnist-dynamic", base)) + "\n")
    result = subprocess.run([sys.executable, str(REPO / "bench" / "likelihood_table.py"),
                             str(results), "--against", str(baseline)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2                                   # the static run is another data set
    differences = [float(line.split(": ")[-1].split(" ± ")[0]) for line in lines]
    assert differences == [pytest.approx(-0.9, abs=0.03), pytest.approx(0.4, abs=0.03)]


def test_throughput_prints_one_line_with_every_arm_and_ratio():
    """bench/throughput.py on digits (offline, seconds): the user's paths (load, from_arrays,
    compile() defaults) beside the in-memory pipeline and the reference, one JSON line."""
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "throughput.py"), "--dataset", "digits",
         "--epochs", "1", "--runs", "1", "--sizes", "paper"],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    run = json.loads(lines[0])["sizes"]["paper"]
    assert run["model"] == "VAE 64-200-200-50 bernoulli" and run["batch_size"] == 100
    assert set(run["examples_per_s"]) == {"load", "from_arrays", "in_memory", "in_memory_spe1",
                                          "in_memory_spe64", "reference"}
    assert all(v > 0 for v in run["examples_per_s"].values())
    assert {"load/in_memory", "from_arrays/in_memory", "load/reference",
            "in_memory/in_memory_spe1", "in_memory/in_memory_spe64"} <= set(run["ratios"])
    # CPU seconds an epoch, per arm and as ratios of the user's paths to the others.
    cpu = run["cpu_seconds_per_epoch"]
    assert set(cpu) == set(run["examples_per_s"]) and all(v > 0 for v in cpu.values())
    assert set(run["cpu_ratios"]) == set(run["ratios"])
    assert all(v > 0 for v in run["cpu_ratios"].values())
    # Each run's own ratios, whose median holds steadier: with one run they are the ratios.
    assert run["paired_ratios"] == run["ratios"]
    assert run["paired_cpu_ratios"] == run["cpu_ratios"]
    for pair, ratio in run["cpu_ratios"].items():  # as of speeds: base's seconds over the arm's
        arm, base = (cpu[name] for name in pair.split("/"))  # both rounded to 0.01 s
        # The ratio of the unrounded seconds lies where rounding by 0.005 each way allows (the
        # exact interval: at this test's 0.02-0.04 s an epoch a first-order bound is too tight).
        assert (base - 0.005) / (arm + 0.005) - 0.001 <= ratio \
            <= (base + 0.005) / max(arm - 0.005, 1e-9) + 0.001
    # Every arm trains the same model on the same data: the losses agree.
    losses = list(run["final_train_loss"].values())
    assert max(losses) - min(losses) < 5


def test_epoch_boundary_prints_one_line_with_both_arms(shared_data):
    """bench/epoch_boundary.py, one short run an arm (500 MNIST images, 2 timed epochs): the
    seconds per epoch and between epochs of the shipped pipeline and of the autotuned one, and
    their ratios. Without autotuning, releasing an iterator takes no waiting."""
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "epoch_boundary.py"), "--runs", "1", "--epochs",
         "2", "--take", "500"], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    run = json.loads(lines[0])
    assert run["train_images"] == 500 and run["timed_epochs"] == 2
    for arm in ("fixed", "autotune"):
        assert run[arm]["boundaries"] == 1   # between the two timed epochs
        assert 0 < run[arm]["inside_seconds"] <= run[arm]["epoch_seconds"] * 2
    assert run["fixed"]["boundary_max_seconds"] < 1.0
    assert run["epoch_seconds_ratio"] == pytest.approx(
        run["autotune"]["epoch_seconds"] / run["fixed"]["epoch_seconds"], abs=0.01)


def test_bernoulli_prints_one_line_whose_draws_match_the_grey_level():
    """bench/bernoulli.py on digits (seconds): the pipeline's byte draw and the float32-uniform
    reference, on 8-bit and float images, each timed and each unbiased."""
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bernoulli.py"), "--dataset", "digits", "--runs",
         "2"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    run = json.loads(lines[0])
    arms = {"byte_uint8", "byte_float", "uniform_uint8", "uniform_float"}
    assert set(run["cpu_ms"]) == set(run["wall_ms"]) == set(run["mean_bit"]) == arms
    assert run["pixels"] == run["chunk_images"] * 64 and run["chunk_images"] > 1000
    assert all(v > 0 for v in run["wall_ms"].values())
    assert set(run["cpu_ratios"]) == {"uniform_uint8/byte_uint8", "uniform_float/byte_float"}
    # The same seed on the same levels: 8-bit and float images give the byte draw the same bits.
    assert run["mean_bit"]["byte_uint8"] == run["mean_bit"]["byte_float"]
    standard_error = 0.5 / np.sqrt(run["pixels"])
    for mean in run["mean_bit"].values():
        assert abs(mean - run["mean_grey"]) < 5 * standard_error


def test_likelihood_speed_prints_one_line_whose_arms_agree():
    """bench/likelihood_speed.py at a small k (seconds): tfvae's log_likelihood and the two
    hand-written estimates are the same estimator on the same weights, so their means over 100
    images agree up to Monte Carlo noise (under 0.5 nats measured at k = 100)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "likelihood_speed.py"), "--models", "vae", "hvae",
         "--k", "100", "--images", "100", "--runs", "1", "--reference-chunk", "50"],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    models = json.loads(lines[0])["models"]
    assert set(models) == {"vae", "hvae"}
    for name, run in models.items():
        estimators = {"tfvae", "reference", "reference_nojit"}
        # The VAE's decoder products are timed too: a floor, with no estimate of its own.
        timed = estimators | ({"decoder_products"} if name == "vae" else set())
        assert set(run["seconds_per_100_images"]) == timed
        assert all(v > 0 for v in run["seconds_per_100_images"].values())
        assert set(run["mean_log_likelihood"]) == estimators
        means = list(run["mean_log_likelihood"].values())
        assert all(m < 0 for m in means) and max(means) - min(means) < 2, (name, means)
    assert 0 < models["vae"]["decoder_products_over_tfvae"] < 1


def test_burda_run_accounts_for_a_killed_segment_and_forgets_epochs_past_its_checkpoint(tmp_path):
    """A segment killed with its machine leaves epochs logged past its last checkpoint and no
    segment record: restoring drops those epochs and records the segment from its logged times."""
    import burda

    run = burda.Run(tmp_path, "vae", train_examples=100)
    run.append("segments.jsonl", {"first_epoch": 1, "last_epoch": 3, "epochs": 3,
                                  "wall_seconds": 30.0})
    for epoch in range(1, 11):                      # logged up to 10, checkpointed at 8
        run.append("log.jsonl", {"epoch": epoch, "seconds": float(epoch)})
    for epoch, seconds in ((2, 100.0), (4, 7.5), (10, 50.0)):
        run.append("curve.jsonl", {"epoch": epoch, "eval_seconds": seconds})
    run.save(8)
    # --status looks at a run that may be training: it changes none of its files.
    files = {name: (tmp_path / name).read_text() for name in ("log.jsonl", "curve.jsonl",
                                                              "segments.jsonl")}
    assert run.restore(read_only=True) == 8
    assert {name: (tmp_path / name).read_text() for name in files} == files
    assert run.restore() == 8
    assert [r["epoch"] for r in run.read("log.jsonl")] == list(range(1, 9))
    assert [r["epoch"] for r in run.read("curve.jsonl")] == [2, 4]
    first, killed = run.read("segments.jsonl")
    assert (killed["first_epoch"], killed["last_epoch"], killed["epochs"]) == (4, 8, 5)
    assert killed["wall_seconds"] == 4 + 5 + 6 + 7 + 8 + 7.5   # epochs 4-8 and epoch 4's curve
    assert "reconstructed" in killed
    run.restore()                                   # recorded now: nothing added twice
    assert len(run.read("segments.jsonl")) == 2


def test_burda_checkpoints_in_shards_that_restore_whole(tmp_path):
    """The repository keeps files small: a run's checkpoint is written in data files of at most
    `max_shard_bytes` (weights and Adam's slots), and restores every value."""
    import burda

    run = burda.Run(tmp_path, "vae", train_examples=100)
    run.max_shard_bytes = 2**20                    # the paper-size VAE: about 3.6 MB in all
    run.restore()
    for variable in run.model.optimizer.variables()[1:]:
        variable.assign(tf.random.normal(variable.shape, seed=1))
    saved = [v.numpy() for v in run.model.variables + run.model.optimizer.variables()]
    run.save(7)
    shards = sorted((tmp_path / "checkpoint").glob("ckpt-7.data-*"))
    assert len(shards) > 2
    assert all(shard.stat().st_size <= run.max_shard_bytes for shard in shards)
    again = burda.Run(tmp_path, "vae", train_examples=100)
    assert again.restore() == 7
    for expected, got in zip(saved, again.model.variables + again.model.optimizer.variables()):
        np.testing.assert_array_equal(got.numpy(), expected)


def test_the_ladder_run_fine_tunes_after_its_2000_epochs(tmp_path):
    """Sønderby et al.'s phases: 2000 epochs at 1e-3, then the fine-tuning phase on the IWAE
    bound with 10 samples and the rate times 0.75 every 200 epochs."""
    import burda

    protocol = burda.PROTOCOLS["ladder_vae"]
    assert (protocol.epochs, protocol.total_epochs) == (2000, 2400)
    rate = protocol.learning_rate(steps_per_epoch=3)
    assert [float(rate(step)) for step in (0, 5999, 6000, 6599, 6600)] == pytest.approx(
        [1e-3, 1e-3, 1e-3, 1e-3, 7.5e-4])
    run = burda.Run(tmp_path, "ladder_vae", train_examples=256 * 3)
    assert run.restore() == 0
    assert json.loads((tmp_path / "protocol.json").read_text())["finetune"]["iwae_samples"] == 10
    assert run.model.iwae_samples == 1
    schedule = protocol.start_fine_tuning(run.model, run.steps_per_epoch)
    assert run.model.iwae_samples == 10
    assert [float(schedule(step)) for step in (6599, 6600)] == pytest.approx([1e-3, 7.5e-4])


def test_burda_pairs_a_posterior_with_its_reference_image_by_image(digits):
    """The IAF run's comparison with vae_mnist (`--finish`): the reference's NLL minus the
    model's, per image, with its standard error, and each one's ELBO gap (positive: k samples
    bound the log-likelihood tighter than one). A trained model against its untrained start is
    better by many standard errors; a model against itself differs by noise only."""
    import burda
    import tf_keras

    import tfvae

    images = (digits > 0.5).astype(np.float32)
    tf_keras.utils.set_random_seed(0)
    untrained = tfvae.models.VAE(input_shape=(8, 8, 1), latent_dim=2, hidden_units=(32,))
    trained = tfvae.models.VAE.from_config(untrained.get_config())
    trained.build((None, 8, 8, 1))
    trained.compile(optimizer=tf_keras.optimizers.Adam(1e-2))
    trained.fit(images, epochs=60, batch_size=16, verbose=0)
    for model in (untrained, trained):
        model.compile()
    better = burda.paired_comparison(trained, untrained, images, k=20)
    assert better["test_examples"] == 64 and better["k"] == 20
    assert better["nll_difference"] > 5 * better["nll_difference_stderr"] > 0
    assert better["reference_nll"] == pytest.approx(better["nll_difference"] + float(
        -burda.log_likelihood(trained, images, k=20).mean()), abs=0.5)
    assert better["gap"] > 0 and better["reference_gap"] > 0
    same = burda.paired_comparison(trained, trained, images, k=200)
    assert abs(same["nll_difference"]) < 4 * same["nll_difference_stderr"] + 0.05
    # The ELBO is one draw per image: the gaps differ by its noise, which the stderr measures.
    assert abs(same["gap"] - same["reference_gap"]) < 4 * same["gap_difference_stderr"] + 0.05


def test_a_paper_runs_card_states_its_comparison_and_deviations():
    """The card's paragraphs for a run of bench/burda.py: a paired run gives the difference
    from its reference with the standard error and both gaps; the protocol's departures from
    the paper are listed; a card written before those fields reads as Burda et al.'s run."""
    import train_zoo

    training = {"epochs": 3280, "schedule_epochs": 3280, "run_dir": "bench/runs/iaf_vae_burda",
                "deviations_from_the_paper": ["Burda's networks", "2 IAF steps"]}
    metrics = {"test_log_likelihood": -85.1, "published_test_nll": 86.843,
               "published_source": "tfvae's vae_mnist version 3", "active_units": [50],
               "paired_with": {"against": "vae_mnist", "test_examples": 10_000, "k": 5000,
                               "nll_difference": 1.74, "nll_difference_stderr": 0.06,
                               "reference_nll": 86.84, "gap": 3.2, "reference_gap": 4.47,
                               "gap_difference_stderr": 0.04}}
    text = "\n".join(train_zoo.paper_run_lines("iaf_vae", training, metrics))
    assert "`vae_mnist`" in text and "+1.74 ± 0.06 nats" in text and "85.10" in text
    assert "3.20 nats here against 4.47" in text
    assert "- Burda's networks\n- 2 IAF steps" in text
    assert "bench/runs/iaf_vae_burda/curve.png" in text
    older = "\n".join(train_zoo.paper_run_lines(
        "vae", {"epochs": 3280, "schedule_epochs": 3280},
        {"test_log_likelihood": -86.84, "published_test_nll": 86.76, "active_units": [28]}))
    assert older.startswith("Burda et al. (2015, Table 1) report a test NLL of 86.76")
    assert "(+0.08 nats)" in older and "bench/runs/vae_burda/segments.jsonl" in older
    assert "departs" not in older
    # The Ladder VAE's epochs run past its schedule into the fine-tuning phase.
    import burda

    finetune = {"epochs": 400, "iwae_samples": 10, "decay": 0.75, "decay_epochs": 200}
    for epochs, phases in ((2400, "after 2000 of the protocol's 2000-epoch schedule and 400 of "
                                  "its 400 epochs of fine-tuning"),
                           (2017, "after 2000 of the protocol's 2000-epoch schedule and 17 of "
                                  "its 400 epochs")):
        ladder = "\n".join(train_zoo.paper_run_lines(
            "ladder_vae", {"epochs": epochs, "schedule_epochs": 2000,
                           "protocol": {"finetune": finetune}},
            {"test_log_likelihood": -81.9, "published_test_nll": 81.74,
             "published_source": "Sønderby et al. 2016", "active_units": [64, 32, 16, 6, 1]}))
        assert phases in ladder and "(+0.16 nats)" in ladder
    assert burda.fine_tuning_text(finetune) == (
        " (400 epochs on the IWAE bound with 10 importance samples, from 1e-3 times 0.75 every "
        "200 epochs)")


def test_serving_prints_one_line_whose_ratios_are_of_its_percentiles():
    """bench/serving.py, a few calls (seconds): every signature at batch 1 and 256 through the
    four paths, and the export's p50 and p99 over the in-memory function's with an interval."""
    result = subprocess.run([sys.executable, str(REPO / "bench" / "serving.py"),
                             "--calls", "20", "5", "--warmup", "1"],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    run = json.loads(lines[0])
    assert run["calls"] == {"1": 20, "256": 5}
    signatures = {"encode", "decode", "sample", "reconstruct", "score", "log_likelihood"}
    assert set(run["results"]) == set(run["vs_tf_function"]) == signatures
    for signature in signatures:
        for batch in ("1", "256"):
            paths = run["results"][signature][batch]
            assert set(paths) == {"savedmodel", "session", "tf_function", "keras_eager"}
            for figures in paths.values():
                assert 0 < figures["p50_ms"] <= figures["p99_ms"]
                assert figures["examples_per_s"] > 0
            for path, ratios in run["vs_tf_function"][signature][batch].items():
                for q in ("p50", "p99"):
                    ratio, low, high = ratios[q]
                    key = f"{q}_ms"
                    expected = paths[path][key] / paths["tf_function"][key]
                    assert ratio == pytest.approx(expected, rel=0.01, abs=0.002)
                    assert 0 < low <= high


def test_serving_ratios_pair_the_rounds_and_figures_keep_their_units():
    """The bootstrap resamples the same rounds for both paths: an arm exactly twice its base has
    an interval of exactly 2, where resampling the two apart would spread it; the figures are
    in milliseconds and examples per second."""
    rng = np.random.default_rng(0)
    base = rng.lognormal(0.0, 0.5, size=1000)
    assert serving.ratio_with_interval(2 * base, base, 99, rng) == [2.0, 2.0, 2.0]
    assert serving.ratio_with_interval(2 * base, base, 50, rng) == [2.0, 2.0, 2.0]
    ratio, low, high = serving.ratio_with_interval(rng.permutation(base), base, 99, rng)
    assert ratio == 1.0 and low < 0.97 and high > 1.03   # unpaired: the interval has width
    assert serving.figures(np.full(100, 1e-3), 256) == {"p50_ms": 1.0, "p99_ms": 1.0,
                                                        "examples_per_s": 256000.0}


def test_format_latency_prints_one_line_with_every_signature_runtime_and_batch(tmp_path, capsys):
    """bench/format_latency.py in this process on a tiny VAE, two rounds a cell (about 20 s, most
    of it tf2onnx converting the six signatures): every signature at batch 1 and 256 in each
    format, finite positive medians, and ratios that are of those medians."""
    for module in ("ai_edge_litert", "onnxruntime", "tf2onnx"):
        pytest.importorskip(module)
    import tfvae

    model = tfvae.models.get("vae", input_shape=(4, 4, 1), latent_dim=2, hidden_units=(8,))
    tfvae.export(model, tmp_path / "tiny")
    out = tmp_path / "format_latency.json"
    format_latency.main(["--model", str(tmp_path / "tiny"), "--seconds", "0", "--rounds", "2",
                         "--warmup", "1", "--k", "3", "--out", str(out)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and out.read_text() == lines[0] + "\n"
    run = json.loads(lines[0])
    assert run["model"] == str(tmp_path / "tiny") and run["version"] == 1 and run["k"] == 3
    assert run["family"] == "vae" and run["config"]["latent_dim"] == 2
    signatures = {"encode", "decode", "sample", "reconstruct", "score", "log_likelihood"}
    assert set(run["results"]) == set(run["vs_saved_model"]) == set(run["rounds"]) == signatures
    for signature in signatures:
        assert set(run["results"][signature]) == {"1", "256"}
        for batch, cell in run["results"][signature].items():
            assert run["rounds"][signature][batch] == 2
            assert set(cell) == {"saved_model", "litert", "onnx"}
            for figures in cell.values():
                low, high = figures["quartiles_ms"]
                assert 0 < low <= figures["median_ms"] <= high < np.inf
                assert 0 <= figures["cpu_ms"] < np.inf
            ratios = run["vs_saved_model"][signature][batch]
            assert set(ratios) == {"litert", "onnx"}
            for name, ratio in ratios.items():
                expected = cell[name]["median_ms"] / cell["saved_model"]["median_ms"]
                assert ratio == pytest.approx(expected, rel=0.01, abs=0.002)
