"""TensorBoard: event files from `SummaryWriter`, from `tf.summary` ops with `FileWriter`,
and from recorded traces, read back with TensorBoard's own reader (and its server)."""

from __future__ import annotations

import io
import math
import os
import pathlib
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

import tracetensor as tt
import tracetensor.graph as tf
import tracetensor.nn as nn
import tracetensor.nn.functional as F

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tracetensor.utils.tensorboard import SummaryWriter, TensorBoardNotInstalled, export_trace

ROOT = pathlib.Path(__file__).resolve().parents[1]


def acc(path: pathlib.Path | str) -> EventAccumulator:
    a = EventAccumulator(str(path), size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    a.Reload()
    return a


def scalars(a: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(s.step, s.value) for s in a.Scalars(tag)]


def expected_buckets(values: np.ndarray, limits: list[float]) -> list[int]:
    """Bucket i holds [limits[i-1], limits[i]): counted here without our histogram code."""
    lows = [-math.inf, *limits[:-1]]
    return [int(((values >= lo) & (values < hi)).sum()) for lo, hi in zip(lows, limits)]


# --------------------------------------------------------------------------- SummaryWriter (eager)


def test_scalars_histograms_images_and_text_read_back(tmp_path):
    rng = np.random.default_rng(0)
    weights = [rng.normal(i, 1.0, size=(20, 5)).astype(np.float32) for i in range(3)]
    with SummaryWriter(tmp_path) as w:
        for step in range(3):
            w.add_scalar("train/loss", tt.tensor(2.0 / (step + 1)), step)
            w.add_histogram("fc.weight", tt.tensor(weights[step]), step)
        w.add_scalars("lr", {"head": 0.1, "body": 0.01}, 0)
        img = np.zeros((3, 4, 5), np.float32)
        img[0, 1, 2] = 1.0  # one red pixel, CHW floats in [0, 1]
        w.add_image("sample", img, 7)
        w.add_text("notes", "lr **0.1**", 7)
    a = acc(tmp_path)
    assert scalars(a, "train/loss") == [(0, 2.0), (1, 1.0), (2, pytest.approx(2 / 3))]
    hs = a.Histograms("fc.weight")
    assert [h.step for h in hs] == [0, 1, 2]
    for h, v in zip(hs, weights):
        hv = h.histogram_value
        assert hv.num == v.size and hv.min == pytest.approx(v.min()) and hv.max == pytest.approx(v.max())
        assert hv.sum == pytest.approx(float(v.astype(np.float64).sum()), rel=1e-6)
        assert sum(hv.bucket) == v.size
        assert list(hv.bucket) == expected_buckets(v.astype(np.float64).reshape(-1), list(hv.bucket_limit))
    # add_scalars: one run per key, all under the main tag, as PyTorch lays them out
    assert scalars(acc(tmp_path / "lr_head"), "lr") == [(0, pytest.approx(0.1))]
    assert scalars(acc(tmp_path / "lr_body"), "lr") == [(0, pytest.approx(0.01))]
    (im,) = a.Images("sample")
    from PIL import Image

    px = np.asarray(Image.open(io.BytesIO(im.encoded_image_string)))
    assert (im.step, im.width, im.height) == (7, 5, 4) and px.shape == (4, 5, 3)
    assert tuple(px[1, 2]) == (255, 0, 0) and px.sum() == 255
    (tx,) = a.Tensors("notes")
    assert tx.step == 7 and tx.tensor_proto.string_val == [b"lr **0.1**"]
    assert a.SummaryMetadata("notes").plugin_data.plugin_name == "text"


def test_histogram_buckets_leave_out_nan_and_inf(tmp_path):
    vals = np.array([-1.0, 0.0, 0.5, 0.5, 2.0, np.nan, np.inf])
    with SummaryWriter(tmp_path) as w:
        w.add_histogram("h", vals, 0)
    hv = acc(tmp_path).Histograms("h")[0].histogram_value
    assert (hv.num, hv.min, hv.max, hv.sum, hv.sum_squares) == (5, -1.0, 2.0, 2.0, 5.5)
    assert list(hv.bucket) == [1, 1, 2, 1]
    # TF's exponential buckets: each value sits just under its bucket's upper limit (0 in [0, 1e-12))
    for v, lim in zip([-1.0, 0.0, 0.5, 2.0], hv.bucket_limit):
        assert v < lim <= v + abs(v) * 0.1 + 1e-12


def test_add_graph_traces_an_eager_model_into_module_scopes(tmp_path):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with SummaryWriter(tmp_path) as w:
        w.add_graph(model, tt.randn(3, 4))
    nodes = {n.name: n for n in acc(tmp_path).Graph().node}
    assert {"Sequential/0/Linear", "Sequential/0/weight", "Sequential/1/Relu", "Sequential/2/Linear"} <= set(nodes)
    assert list(nodes["Sequential/0/Linear"].input) == ["arg0", "Sequential/0/weight", "Sequential/0/bias"]
    assert list(nodes["Sequential/1/Relu"].input) == ["Sequential/0/Linear"]
    shape = nodes["Sequential/0/Linear"].attr["_output_shapes"].list.shape[0]
    assert [d.size for d in shape.dim] == [3, 8]


def test_add_hparams_writes_the_hparams_plugin_run(tmp_path):
    from tensorboard.plugins.hparams import metadata

    with SummaryWriter(tmp_path) as w:
        w.add_hparams({"lr": 0.1, "optimizer": "sgd", "bn": True}, {"hparam/accuracy": 0.75}, run_name="trial1")
    a = acc(tmp_path / "trial1")
    assert scalars(a, "hparam/accuracy") == [(0, 0.75)]
    ssi = metadata.parse_session_start_info_plugin_data(
        a.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content
    )
    assert ssi.hparams["lr"].number_value == 0.1 and ssi.hparams["optimizer"].string_value == "sgd"
    assert ssi.hparams["bn"].bool_value is True
    exp = metadata.parse_experiment_plugin_data(a.SummaryMetadata(metadata.EXPERIMENT_TAG).plugin_data.content)
    assert [m.name.tag for m in exp.metric_infos] == ["hparam/accuracy"]


def test_purge_step_hides_the_steps_a_crashed_run_will_redo(tmp_path):
    with SummaryWriter(tmp_path) as w:
        for s in range(10):
            w.add_scalar("loss", float(s), s)
    time.sleep(1.1)  # a new event file sorts after the first (its name holds the time in seconds)
    with SummaryWriter(tmp_path, purge_step=5) as w:
        for s in range(5, 8):
            w.add_scalar("loss", 100.0 + s, s)
    assert scalars(acc(tmp_path), "loss") == [(s, float(s)) for s in range(5)] + [(s, 100.0 + s) for s in range(5, 8)]


def test_default_log_dir_is_runs_date_host_comment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with SummaryWriter(comment="_lr0.1") as w:
        w.add_scalar("x", 1.0, 0)
    (d,) = os.listdir(tmp_path / "runs")
    assert re.fullmatch(r"[A-Z][a-z]{2}\d\d_\d\d-\d\d-\d\d_.+_lr0\.1", d) and w.get_logdir() == os.path.join("runs", d)
    assert scalars(acc(tmp_path / "runs" / d), "x") == [(0, 1.0)]


def test_bad_input_gets_one_clear_error(tmp_path):
    with SummaryWriter(tmp_path) as w:
        with pytest.raises(ValueError, match=r"scalar 'loss' must be a single number.*\(2, 2\)"):
            w.add_scalar("loss", tt.ones(2, 2), 0)
        with pytest.raises(ValueError, match="1, 3 or 4 channels, got 5"):
            w.add_image("img", np.zeros((5, 4, 4)), 0)
        with pytest.raises(TypeError, match="callable model"):
            w.add_graph(42)
        with pytest.raises(NotImplementedError, match="add_embedding is not supported.*add_histogram"):
            w.add_embedding(np.zeros((3, 2)))


def test_a_missing_tensorboard_names_the_extra_to_install(tmp_path, monkeypatch):
    from tracetensor.utils.tensorboard import summary as sm

    monkeypatch.setattr(sm, "_PROTOS", None)
    monkeypatch.setitem(sys.modules, "tensorboard.compat.proto", None)
    with pytest.raises(TensorBoardNotInstalled, match=re.escape('pip install "tracetensor[tensorboard]"')):
        SummaryWriter(tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ImportError, match=re.escape("tracetensor[tensorboard]")):
        tf.summary.scalar("loss", tf.constant(1.0))
    from tracetensor.profiler.cli import main as profile_main

    script = tmp_path / "train.py"
    script.write_text("open(__file__ + '.ran', 'w').close()\n")
    assert (
        profile_main(["--no-py-spy", "--out", str(tmp_path / "p"), "--tensorboard", str(tmp_path / "tb"), str(script)])
        == 2
    )
    assert not (tmp_path / "train.py.ran").exists()  # refused before the script ran


# --------------------------------------------------------------------------- tf.summary (graph mode)


def _tf1_model():
    x = tf.placeholder(tf.float32, [None, 4], name="x")
    y = tf.placeholder(tf.int64, [None], name="y")
    with tf.name_scope("layer1"):
        w = tf.Variable(tf.random_normal([4, 3], stddev=0.5, seed=1), name="W")
        logits = tf.matmul(x, w)
        tf.summary.histogram("weights", w)
    with tf.name_scope("metrics"):
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        tf.summary.scalar("loss", loss)
    tf.summary.image("inputs", tf.reshape(x, [-1, 2, 2, 1]), max_outputs=2)
    tf.summary.text("note", "a **TF1** run")
    train = tf.train.GradientDescentOptimizer(0.5).minimize(loss)
    return x, y, w, loss, train


def test_tf1_summaries_file_writer_graph_and_run_metadata(tmp_path):
    g = tf.Graph()
    with g.as_default():
        x, y, w, loss, train = _tf1_model()
        merged = tf.summary.merge_all()
        rng = np.random.default_rng(0)
        xs, ys = rng.random((8, 4)).astype(np.float32), rng.integers(0, 3, 8)
        losses, ws = [], []
        with tf.Session() as sess, tf.summary.FileWriter(str(tmp_path), sess.graph) as fw:
            sess.run(tf.global_variables_initializer())
            for step in range(3):
                md = tf.RunMetadata()
                opts = tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE)
                ws.append(sess.run(w))
                s, lv, _ = sess.run([merged, loss, train], {x: xs, y: ys}, options=opts, run_metadata=md)
                losses.append(float(lv))
                fw.add_summary(s, step)
                fw.add_run_metadata(md, f"step{step}", step)
    assert tf.Summary.FromString(bytes(s)).value[0].tag == "layer1/weights"
    a = acc(tmp_path)
    assert scalars(a, "metrics/loss") == [(i, pytest.approx(v)) for i, v in enumerate(losses)]
    assert losses[2] < losses[0]
    for h, v in zip(a.Histograms("layer1/weights"), ws):
        assert h.histogram_value.num == 12 and h.histogram_value.max == pytest.approx(v.max())
        assert list(h.histogram_value.bucket) == expected_buckets(
            v.astype(np.float64).reshape(-1), list(h.histogram_value.bucket_limit)
        )
    assert a.Tags()["images"] == ["inputs/image/0", "inputs/image/1"]
    assert a.Tensors("note")[0].tensor_proto.string_val == [b"a **TF1** run"]
    nodes = {n.name: n for n in a.Graph().node}
    assert {
        "x",
        "layer1/W",
        "layer1/MatMul",
        "metrics/Mean",
        "metrics/loss",
        "layer1/weights",
        "gradients/layer1/MatMul_grad",
    } <= set(nodes)
    assert list(nodes["layer1/MatMul"].input) == ["x", "layer1/W"] and nodes["layer1/MatMul"].op == "MatMul"
    assert nodes["metrics/loss"].op == "ScalarSummary"
    md = a.RunMetadata("step2")
    stats = {n.node_name: n for d in md.step_stats.dev_stats for n in d.node_stats}
    assert "layer1/MatMul" in stats and "metrics/loss" in stats and set(stats) <= set(nodes)
    mm = stats["layer1/MatMul"]
    assert mm.all_end_rel_micros >= 1 and [d.size for d in mm.output[0].tensor_description.shape.dim] == [8, 3]
    assert mm.memory[0].total_bytes == 8 * 3 * 4


def test_summary_ops_are_events_the_debugger_lists(tmp_path):
    from tracetensor.debugger.commands import Debugger

    g = tf.Graph()
    with g.as_default(), tf.Session() as sess:
        v = tf.constant([1.0, 2.0], name="v")
        s = tf.summary.scalar("total", tf.reduce_sum(v))
        with tt.trace.MemoryTrace() as tr:
            out = sess.run(s)
    (e,) = tr.events(op="ScalarSummary")
    assert e.name == "total" and e.mode == "graph" and e.outputs[0].shape == out.shape
    assert tf.Summary.FromString(out.tobytes()).value[0].simple_value == 3.0
    listing = Debugger(tr, tr.last_run()).plain("lt")
    assert "total" in listing and "ScalarSummary" in listing


def test_summary_op_errors_name_the_node_and_line():
    g = tf.Graph()
    with g.as_default(), tf.Session() as sess:
        h = tf.summary.histogram("acts", tf.log(tf.constant([-1.0, 1.0])))  # log(-1) = nan
        line = sys._getframe().f_lineno - 1
        with pytest.raises(
            tt.TraceTensorError,
            match=rf"(?s)'acts'.*test_tensorboard.py:{line}.*Nan in summary "
            r"histogram for: acts",
        ):
            sess.run(h)
        sc = tf.summary.scalar("vec", tf.constant([1.0, 2.0]))
        with pytest.raises(tt.TraceTensorError, match=r"(?s)'vec'.*takes one number.*\(2,\)"):
            sess.run(sc)
        with pytest.raises(TypeError, match="summary tensors"):
            tf.summary.merge([tf.constant(1.0)])
        assert tf.summary.merge_all(scope="nothing-here") is None
    with pytest.raises(NotImplementedError, match="tf.summary.audio is not supported.*histogram"):
        tf.summary.audio("a", tf.constant([0.0]), 16000)


# --------------------------------------------------------------------------- traces -> TensorBoard


def _train_eager(steps: int = 4, nan_at: int | None = None):
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = tt.optim.SGD(model.parameters(), lr=0.5)
    xs = rng.normal(size=(16, 4)).astype(np.float32)
    y = tt.tensor(rng.integers(0, 3, 16))
    losses, grads = [], []
    for step in range(steps):
        x = tt.tensor(xs)
        if step == nan_at:
            x = tt.tensor(np.where(np.arange(xs.size).reshape(xs.shape) == 0, np.nan, xs).astype(np.float32))
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad.cpu().numpy().copy() for n, p in model.named_parameters()})
        opt.step()
    return losses, grads


def test_trace_export_gives_loss_gradient_flow_and_op_times_per_step(tmp_path):
    with tt.record(str(tmp_path / "run.ttrace"), values="full"):
        losses, grads = _train_eager()
    with tt.trace.open(str(tmp_path / "run.ttrace")) as t:
        rep = export_trace(t, str(tmp_path / "tb"))
    assert rep.steps == 4
    a = acc(tmp_path / "tb")
    assert scalars(a, "loss") == [(i, pytest.approx(v, rel=1e-5)) for i, v in enumerate(losses)]
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        assert scalars(a, f"grad_norm/{name}") == [
            (i, pytest.approx(float(np.linalg.norm(g[name])), rel=1e-4)) for i, g in enumerate(grads)
        ]
        hs = a.Histograms(f"gradients/{name}")
        assert [h.step for h in hs] == [0, 1, 2, 3]
        assert hs[1].histogram_value.num == grads[1][name].size
        assert hs[1].histogram_value.sum == pytest.approx(float(grads[1][name].sum()), abs=1e-6)
        assert [s for s, _ in scalars(a, f"weight_norm/{name}")] == [0, 1, 2, 3]
    assert {"op_time_ms/linear", "op_time_ms/sgd_update", "nonfinite/values"} <= set(a.Tags()["scalars"])
    assert all(v > 0 for _, v in scalars(a, "op_time_ms/linear"))
    assert scalars(a, "nonfinite/values") == [(i, 0.0) for i in range(4)]


@pytest.mark.tracetensor_allow_nan
def test_trace_export_counts_non_finite_values(tmp_path):
    with tt.record(str(tmp_path / "nan.ttrace"), values="summary"):
        _train_eager(steps=3, nan_at=1)  # a NaN in the input of step 1 spreads everywhere after it
    with tt.trace.open(str(tmp_path / "nan.ttrace")) as t:
        export_trace(t, str(tmp_path / "tb"))
    a = acc(tmp_path / "tb")
    counts = [v for _, v in scalars(a, "nonfinite/values")]
    assert counts[0] == 0 and counts[1] > 0 and counts[2] > counts[1]  # NaN weights after step 1's update
    assert [s for s, _ in scalars(a, "grad_nonfinite/0.weight")] == [1, 2]
    assert "gradients/0.weight" not in a.Tags()["histograms"]  # values="summary": norms, no histograms
    loss = scalars(a, "loss")
    assert math.isfinite(loss[0][1]) and math.isnan(loss[1][1])


def test_cli_trace_export_of_a_graph_run(tmp_path):
    path = str(tmp_path / "g.ttrace")
    g = tf.Graph()
    with g.as_default():
        x, y, w, loss, train = _tf1_model()
        with tt.record(path, values="full"), tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            rng = np.random.default_rng(0)
            for _ in range(3):
                sess.run(train, {x: rng.random((8, 4)).astype(np.float32), y: rng.integers(0, 3, 8)})
    out = tmp_path / "tb"
    r = subprocess.run(
        [sys.executable, "-m", "tracetensor", "trace", "export", "--tensorboard", str(out), path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "4 steps" in r.stdout
    a = acc(out)
    assert [s for s, _ in scalars(a, "loss")] == [1, 2, 3]  # step 0 is the initializer's run
    assert [s for s, _ in scalars(a, "grad_norm/layer1/W")] == [1, 2, 3]
    assert a.Histograms("weights/layer1/W")[0].histogram_value.num == 12
    assert {"layer1/MatMul", "metrics/Mean"} <= {n.name for n in a.Graph().node}
    assert "step 3" in a.Tags()["run_metadata"]
    prof = subprocess.run(
        [sys.executable, "-m", "tracetensor", "profile", "--from-trace", path, "--tensorboard", str(tmp_path / "tb2")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert prof.returncode == 0, prof.stderr
    assert scalars(acc(tmp_path / "tb2"), "loss") == scalars(a, "loss")
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracetensor",
            "trace",
            "export",
            "--tensorboard",
            str(out),
            str(tmp_path / "missing.ttrace"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "missing.ttrace" in bad.stderr and "Traceback" not in bad.stderr


def test_profile_tensorboard_option(tmp_path):
    out = tmp_path / "prof"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracetensor",
            "profile",
            "--no-py-spy",
            "--out",
            str(out),
            "--tensorboard",
            str(out / "tb"),
            "examples/mlp_eager.py",
            "--steps",
            "5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "TensorBoard:" in r.stdout
    a = acc(out / "tb")
    assert len(scalars(a, "loss")) == 5 and len(scalars(a, "grad_norm/0.weight")) == 5


def test_profile_tensorboard_across_mpi_ranks_gives_one_run_per_rank(tmp_path):
    from tracetensor.profiler.ranks import find_mpiexec

    if find_mpiexec() is None:
        pytest.skip("needs MPI's mpiexec (pip install mpich)")
    out = tmp_path / "prof"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracetensor",
            "profile",
            "-n",
            "2",
            "--out",
            str(out),
            "--tensorboard",
            str(out / "tb"),
            "tests/mpi/train.py",
            "--steps",
            "3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out / "tb")) == ["rank0", "rank1"]
    for rank in ("rank0", "rank1"):
        a = acc(out / "tb" / rank)
        assert len(scalars(a, "loss")) == 3 and any(t.startswith("grad_norm/") for t in a.Tags()["scalars"])


def test_the_examples_write_what_the_readme_describes(tmp_path):
    def run(script: str, logdir: pathlib.Path) -> str:
        r = subprocess.run(
            [sys.executable, f"examples/{script}", "--logdir", str(logdir), "--steps", "12"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        return r.stdout

    run("tensorboard_mlp.py", tmp_path / "mlp")
    a = acc(tmp_path / "mlp" / "train")
    assert len(scalars(a, "loss")) == 12 and scalars(a, "loss")[-1][1] < scalars(a, "loss")[0][1]
    assert [h.step for h in a.Histograms("grads/0.weight")] == [0, 10, 11]
    assert a.Tags()["images"] == ["fc1_weights"] and "Sequential/0/Linear" in {n.name for n in a.Graph().node}
    assert "hparam/accuracy" in acc(tmp_path / "mlp" / "train" / "hparams").Tags()["scalars"]
    t = acc(tmp_path / "mlp" / "trace")
    assert len(scalars(t, "loss")) >= 12 and "gradients/2.bias" in t.Tags()["histograms"]

    run("tensorboard_tf1.py", tmp_path / "tf1")
    g = acc(tmp_path / "tf1")
    assert [s for s, _ in scalars(g, "loss/cross_entropy")] == list(range(12))
    assert {"hidden/weights", "hidden/activations"} <= set(g.Tags()["histograms"])
    assert g.Tags()["run_metadata"] == ["step0", "step10"] and "hidden/MatMul" in {n.name for n in g.Graph().node}


@pytest.mark.gpu
def test_summaries_writer_and_export_on_the_gpu(tmp_path):
    """cuda tensors log as CPU ones do; tf.summary ops run inside a cuda session; a recorded
    cuda training step exports with its GPU op times."""
    w_cpu = np.linspace(-1, 1, 50, dtype=np.float32)
    with SummaryWriter(tmp_path / "eager") as w:
        w.add_scalar("s", tt.tensor(0.25, device="cuda"), 0)
        w.add_histogram("h", tt.tensor(w_cpu, device="cuda"), 0)
    a = acc(tmp_path / "eager")
    assert scalars(a, "s") == [(0, 0.25)]
    assert list(a.Histograms("h")[0].histogram_value.bucket) == expected_buckets(
        w_cpu.astype(np.float64), list(a.Histograms("h")[0].histogram_value.bucket_limit)
    )
    g = tf.Graph()
    with g.as_default(), tf.Session(device="cuda") as sess:
        v = tf.constant(w_cpu)
        merged = tf.summary.merge([tf.summary.scalar("m", tf.reduce_mean(v)), tf.summary.histogram("v", v)])
        out = sess.run(merged)
    vals = {x.tag: x for x in tf.Summary.FromString(out.tobytes()).value}
    assert vals["m"].simple_value == pytest.approx(0.0, abs=1e-6) and vals["v"].histo.num == 50
    before = tt.get_default_device()
    tt.set_default_device("cuda")
    try:
        with tt.record(str(tmp_path / "gpu.ttrace"), values="full"):
            _train_eager(steps=2)
    finally:
        tt.set_default_device(before)
    with tt.trace.open(str(tmp_path / "gpu.ttrace")) as t:
        export_trace(t, str(tmp_path / "tb"))
    e = acc(tmp_path / "tb")
    assert len(scalars(e, "loss")) == 2 and e.Histograms("gradients/0.weight")[0].histogram_value.num == 32


# --------------------------------------------------------------------------- a real TensorBoard


def _get(url: str | urllib.request.Request) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read()


@pytest.mark.slow
def test_a_real_tensorboard_serves_what_we_wrote(tmp_path):
    import json
    import socket

    logdir = tmp_path / "logs"
    with SummaryWriter(logdir / "eager") as w:
        for step in range(3):
            w.add_scalar("loss", 1.0 / (step + 1), step)
            w.add_histogram("w", np.arange(10.0) + step, step)
        w.add_hparams({"lr": 0.1, "optimizer": "sgd"}, {"hparam/accuracy": 0.5}, run_name="trial")
    g = tf.Graph()
    with g.as_default(), tf.name_scope("layer1"):
        tf.matmul(tf.placeholder(tf.float32, [None, 2], name="x"), tf.ones([2, 2]), name="mm")
    with tf.summary.FileWriter(str(logdir / "graph"), g):
        pass
    with socket.socket() as s:  # a free loopback port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = pathlib.Path(sys.executable).with_name("tensorboard")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tensorboard.main"]
    proc = subprocess.Popen(
        [
            *cmd,
            "--logdir",
            str(logdir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--load_fast",
            "false",
            "--reload_interval",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        tags: dict = {}
        while time.monotonic() < deadline:
            try:
                tags = json.loads(_get(f"{base}/data/plugin/scalars/tags"))
                if "eager" in tags and "eager/trial" in tags:
                    break
            except OSError:
                pass
            assert proc.poll() is None, "tensorboard exited"
            time.sleep(0.3)
        assert "loss" in tags.get("eager", {}), tags
        q = urllib.parse.urlencode
        pts = json.loads(_get(f"{base}/data/plugin/scalars/scalars?{q({'run': 'eager', 'tag': 'loss'})}"))
        assert [(p[1], p[2]) for p in pts] == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
        hs = json.loads(_get(f"{base}/data/plugin/histograms/histograms?{q({'run': 'eager', 'tag': 'w'})}"))
        assert [h[1] for h in hs] == [0, 1, 2]
        assert sum(b[2] for b in hs[2][2]) == pytest.approx(10)  # [left, right, count] buckets
        graph = _get(f"{base}/data/plugin/graphs/graph?{q({'run': 'graph', 'conceptual': 'false'})}").decode()
        assert 'name: "layer1/mm"' in graph and 'input: "layer1/x"' in graph
        body = json.dumps(
            {
                "experimentName": "",
                "allowedStatuses": ["STATUS_SUCCESS"],
                "colParams": [],
                "startIndex": 0,
                "sliceSize": 10,
            }
        ).encode()
        req = urllib.request.Request(
            f"{base}/data/plugin/hparams/session_groups", data=body, headers={"Content-Type": "application/json"}
        )
        (group,) = json.loads(_get(req))["sessionGroups"]
        assert group["hparams"] == {"lr": 0.1, "optimizer": "sgd"}
        assert [m["value"] for m in group["metricValues"]] == [0.5]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
