"""TF1 programs written as the public examples are (tests/programs/tf1/), each run as a user
would run it: a subprocess, with nothing changed but `tensorflow` -> `tracetensor.graph` in
its imports. The assertions are what the program's user reads on screen."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).resolve().parent / "programs" / "tf1"
pytestmark = pytest.mark.tracetensor_allow_nan  # debug_mnist is about a NaN


def swap_imports(source: str) -> str:
    """The one change a user makes: `import tensorflow as tf` -> `import tracetensor.graph as tf`
    (and `from tensorflow.X import Y` -> `from tracetensor.graph.X import Y`)."""
    return re.sub(r"^(\s*)(import|from) tensorflow\b", r"\1\2 tracetensor.graph", source, flags=re.M)


def run(name: str, tmp_path: Path, *args: str, commands: list[str] | None = None) -> subprocess.CompletedProcess:
    src = (PROGRAMS / name).read_text()
    swapped = swap_imports(src)
    assert "tensorflow" not in "\n".join(
        ln for ln in swapped.splitlines() if ln.lstrip().startswith(("import", "from"))
    )
    path = tmp_path / name
    path.write_text(swapped)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run(
        [sys.executable, "-W", "ignore", str(path), *args],
        input="".join(c + "\n" for c in commands or []),
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
    )


def ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def number(text: str, pattern: str) -> float:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in output:\n{text[-2000:]}"
    return float(m.group(1))


def test_every_program_is_written_against_tensorflow() -> None:
    programs = sorted(PROGRAMS.glob("*.py"))
    assert len(programs) >= 10
    for p in programs:
        assert re.search(r"^import tensorflow as tf$", p.read_text(), re.M), p.name


def test_mnist_softmax_tutorial(tmp_path) -> None:
    out = ok(run("mnist_softmax.py", tmp_path, "--steps", "150"))
    assert number(out, r"accuracy ([\d.]+)") > 0.9
    assert "dtype float32" in out


def test_mnist_deep_cnn_tutorial(tmp_path) -> None:
    out = ok(run("mnist_deep.py", tmp_path))
    first = number(out, r"step 0, training accuracy ([\d.]+)")
    assert number(out, r"test accuracy ([\d.]+)") > max(0.9, first)


def test_linear_regression_with_float_placeholders(tmp_path) -> None:
    out = ok(run("linear_regression.py", tmp_path))
    # 60 epochs of per-sample SGD from the (seeded) random start: most of the way to the
    # least-squares optimum of the 17 points (cost 0.0770)
    final = number(out, r"Training cost=([\d.]+)")
    assert final < 0.1 and final < number(out, r"first cost=([\d.]+)") / 5
    assert "placeholder dtype: float32" in out  # "float" is float32, as in TF


def test_logistic_regression(tmp_path) -> None:
    out = ok(run("logistic_regression.py", tmp_path))
    costs = [float(c) for c in re.findall(r"cost= ([\d.]+)", out)]
    assert len(costs) == 4 and costs == sorted(costs, reverse=True)
    assert number(out, r"Accuracy: ([\d.]+)") > 0.9


def test_raw_convolutional_network(tmp_path) -> None:
    out = ok(run("convolutional_network_raw.py", tmp_path))
    assert "logits shape: (?, 4) flattened conv features: 16" in out  # 12x12 -> 6x6 -> 3x3 -> 1x1 (SAME)
    assert number(out, r"Testing Accuracy: ([\d.]+)") > 0.9


def test_lstm_classifier_with_static_rnn(tmp_path) -> None:
    out = ok(run("recurrent_network.py", tmp_path))
    assert "variables: Variable:0 Variable_1:0 rnn/basic_lstm_cell/kernel:0 rnn/basic_lstm_cell/bias:0\n" in out
    assert number(out, r"Step 60, Minibatch Loss= ([\d.]+)") < number(out, r"Step 1, Minibatch Loss= ([\d.]+)")
    assert number(out, r"Testing Accuracy: ([\d.]+)") > 0.7


def test_dynamic_rnn_with_sequence_lengths(tmp_path) -> None:
    out = ok(run("dynamic_rnn.py", tmp_path))
    assert number(out, r"test accuracy ([\d.]+)") > 0.85
    assert "final state matches last output: True" in out
    assert "zeros past the end: True" in out


def test_save_and_restore_with_the_checkpoint_prefix(tmp_path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    out = ok(run("save_restore_model.py", tmp_path, str(model_dir)))
    prefix = f"{model_dir}/model.ckpt-18"
    assert f"Model saved in file: {prefix}\n" in out
    assert f"latest checkpoint: {prefix}\n" in out
    assert "restored step: 18" in out and "same predictions: True" in out
    assert "files: checkpoint model.ckpt-18.data-00000-of-00001 model.ckpt-18.index" in out


def test_app_flags_program(tmp_path) -> None:
    p = run(
        "flags_mlp.py",
        tmp_path,
        "--max_steps=120",
        "--nofake_data",
        "--hidden1",
        "16",
        "--extra_layers=8,4",
        "--optimizer",
        "adam",
        "positional",
    )
    out = ok(p)
    assert "argv: ['positional']" in out  # tf.app.run hands main what the flags did not take
    assert "flags: lr=0.1 steps=120 hidden1=16 fake=False layers=['8', '4'] opt=adam" in out
    assert "variables: dense/kernel dense/bias dense_1/kernel dense_1/bias dense_2/kernel" in out
    assert number(out, r"train accuracy ([\d.]+)") > 0.9
    assert "INFO:tensorflow:Step 0: loss = " in p.stderr


def test_app_flags_refuse_a_bad_value(tmp_path) -> None:
    p = run("flags_mlp.py", tmp_path, "--optimizer=bogus")
    assert p.returncode == 1
    assert "FATAL Flags parsing error: flag --optimizer=bogus: must be one of ['sgd', 'adam', 'momentum']" in p.stderr
    assert "Traceback" not in p.stderr


def test_layers_cnn_with_batch_norm_updates_and_reuse(tmp_path) -> None:
    out = ok(run("layers_cnn.py", tmp_path))
    assert (
        "trainable: conv1/kernel conv1/bias bn1/gamma bn1/beta conv2/kernel conv2/bias dense/kernel dense/bias "
        "logits/kernel logits/bias\n"
    ) in out  # the reused tower made no new variables
    assert "update ops: 2" in out and "global step: 40" in out
    assert "moving mean moved: True" in out and "shared tower agrees: True" in out
    assert number(out, r"test accuracy ([\d.]+)") > 0.9


def test_tfdbg_debug_mnist_finds_the_log_that_went_inf(tmp_path) -> None:
    p = run("debug_mnist.py", tmp_path, "--debug", "--ui_type", "readline", commands=["run -f has_inf_or_nan", "exit"])
    out = ok(p)
    stop = int(number(out, r"======== run-end: run #(\d+) ========"))
    assert 1 < stop <= 20
    assert f"run #{stop}: tensor filter 'has_inf_or_nan' passed at cross_entropy/Log:0 (Log)" in out
    assert "Accuracy at step 9:" in out  # `exit` lets the program finish undebugged
    plain = ok(run("debug_mnist.py", tmp_path))  # the symptom without the debugger: accuracy collapses
    acc = [float(a) for a in re.findall(r"Accuracy at step \d+: ([\d.]+)", plain)]
    assert len(acc) == 10 and max(acc) > 0.5 and acc[-1] < 0.2


def test_tfdbg_debug_errors_shape_mismatch(tmp_path) -> None:
    p = run("debug_errors.py", tmp_path, "--debug", "--ui_type", "readline", commands=["run", "exit"])
    assert p.returncode == 3, p.stderr  # the program caught tf.errors.InvalidArgumentError
    screen = p.stdout.split("run-end: run #1")[1]
    line = next(
        i
        for i, ln in enumerate((PROGRAMS / "debug_errors.py").read_text().splitlines(), 1)
        if 'y = tf.matmul(m, x, name="y")' in ln
    )
    assert "raised ShapeError" in screen and "node: y" in screen
    assert f"debug_errors.py:{line}: cannot multiply (2, 3) by (1, 3)" in screen
    assert "Transpose     x:0" in screen  # the transpose of an unknown-rank placeholder ran
    assert "caught InvalidArgumentError: MatMul 'y' defined at" in p.stdout


def test_tfdbg_debug_errors_without_the_debugger(tmp_path) -> None:
    p = run("debug_errors.py", tmp_path, "--error", "uninitialized_variable")
    assert p.returncode == 4 and "caught FailedPreconditionError: Attempting to use uninitialized value v" in p.stdout
    assert "[[ 5.]\n [-1.]]" in ok(run("debug_errors.py", tmp_path, "--error", "no_error"))


def test_tfdbg_debug_fibonacci_with_a_filter_added_on_the_session(tmp_path) -> None:
    out = ok(
        run(
            "debug_fibonacci.py",
            tmp_path,
            "--debug",
            "--length",
            "50",
            "--ui_type",
            "readline",
            commands=["run -f has_negative", "exit"],
        )
    )
    # F(47) = 2971215073 no longer fits an int32: node_46 is the first negative value
    assert "run #1: tensor filter 'has_negative' passed at node_46:0 (AddV2)" in out
    assert "Fibonacci number at position 50:\n[[-298632863]]" in out
    assert "Fibonacci number at position 20:\n[[6765]]" in ok(run("debug_fibonacci.py", tmp_path))


def test_char_rnn_language_model_feeds_its_state_back(tmp_path) -> None:
    out = ok(run("char_rnn.py", tmp_path))
    first = number(out, r"Epoch: 1 Train Perplexity: ([\d.]+)")
    last = number(out, r"Epoch: 6 Train Perplexity: ([\d.]+)")
    assert last < 1.5 < first
    assert "learning rate: 0.0100 after 96 steps" in out  # exponential_decay, staircase, global step
    assert "sample: 'hello world. hello world." in out  # the test model reused the trained variables
