"""The pytest plugin as a user meets it: test files run with `pytester`, checking
outcomes, the failure report and the short summary line."""

from __future__ import annotations

from pathlib import Path

import pytest

# The inner runs make NaN on purpose and run in this process, where the outer
# plugin would see their events too.
pytestmark = pytest.mark.tracetensor_allow_nan

SQRT = """
import tracetensor as tt

def test_sqrt():
    x = tt.tensor([0.0, 4.0], requires_grad=True)
    y = x.sqrt().sum()
    y.backward()
"""
SQRT_LINE = 5  # makepyfile drops the first newline; the forward line: `y = x.sqrt().sum()`

LOG = """
import tracetensor as tt

def test_log():
    w = tt.tensor([[1.0, -2.0], [3.0, 0.5]], requires_grad=True)
    logits = tt.tensor([[800.0, 0.0]]) @ w
    loss = -(logits.softmax(-1).log() * tt.tensor([[0.0, 1.0]])).sum()
    loss.backward()
"""
LOG_LINE = 6

FORWARD_ONLY = """
import tracetensor as tt

def test_forward_only():
    tt.tensor([0.0, 1.0]).log()
"""

CLEAN = """
import tracetensor as tt

def test_clean():
    w = tt.tensor([[0.5, -0.2], [0.1, 0.3]], requires_grad=True)
    x = tt.tensor([[1.0, 2.0]])
    loss = (x @ w).softmax(-1).log().mean()
    loss.backward()
    assert w.grad is not None
"""


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # the short summary line is cut to the terminal width


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", "-rf", *args)


def test_clean_test_passes_in_every_mode(pytester: pytest.Pytester):
    pytester.makepyfile(CLEAN)
    for mode in ("grad", "all", "off"):
        run(pytester, f"--tracetensor-nan={mode}").assert_outcomes(passed=1)


def test_sqrt_of_zero_gradient_fails_with_op_line_and_parameter(pytester: pytest.Pytester):
    pytester.makepyfile(test_plugin_sqrt=SQRT)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*non-finite gradient from sqrt (backward) at test_plugin_sqrt.py:{SQRT_LINE} -> tensor_*",
            "*- tracetensor: non-finite values -*",
            "*2 non-finite tensor(s) in this test (2 gradient(s))*",
            "first non-finite tensor, in execution order:",
            "  tensor  gradients/sqrt*_grad:0: *+inf=1*",
            "  op      sqrt 'gradients/sqrt*_grad' (backward, eager mode)",
            "  flows into  tensor_*",
            f"  forward line  test_plugin_sqrt.py:{SQRT_LINE} in test_sqrt",
            "      y = x.sqrt().sum()",
            "*zero=1*",
            "FAILED test_plugin_sqrt.py::test_sqrt - Failed: tracetensor: non-finite gradient from sqrt*",
        ]
    )


def test_log_of_zero_gradient_fails_and_names_the_forward_log(pytester: pytest.Pytester):
    pytester.makepyfile(test_plugin_log=LOG)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*tracetensor: non-finite gradient from log (backward) at test_plugin_log.py:{LOG_LINE}*",
            "first non-finite tensor, in execution order:",
            "  op      log 'log*' (forward, eager mode)",
            f"  line  test_plugin_log.py:{LOG_LINE} in test_log",
            "      softmax*:0: *zero=1*",  # the input that was 0: softmax underflowed
            "first non-finite gradient:",
            "  op      log 'gradients/log*_grad' (backward, eager mode)",
            f"  forward line  test_plugin_log.py:{LOG_LINE} in test_log",
        ]
    )


def test_forward_only_nan_fails_in_all_mode_not_in_grad_mode(pytester: pytest.Pytester):
    pytester.makepyfile(FORWARD_ONLY)
    run(pytester, "--tracetensor-nan=grad").assert_outcomes(passed=1)
    run(pytester).assert_outcomes(passed=1)  # grad is the default
    result = run(pytester, "--tracetensor-nan=all")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*tracetensor: non-finite value from log (forward)*1 non-finite tensor"])


def test_off_mode_and_allow_marker_let_nan_pass(pytester: pytest.Pytester):
    pytester.makepyfile(test_plugin_sqrt=SQRT)
    run(pytester, "--tracetensor-nan=off").assert_outcomes(passed=1)
    pytester.makepyfile(
        test_plugin_sqrt=SQRT.replace(
            "def test_sqrt", "import pytest\n@pytest.mark.tracetensor_allow_nan\ndef test_sqrt"
        )
    )
    run(pytester, "--tracetensor-nan=all").assert_outcomes(passed=1)


def test_mode_marker_overrides_the_session_mode(pytester: pytest.Pytester):
    pytester.makepyfile(
        FORWARD_ONLY.replace(
            "def test_forward_only", "import pytest\n@pytest.mark.tracetensor_nan('all')\ndef test_forward_only"
        )
    )
    run(pytester).assert_outcomes(failed=1)


def test_command_line_wins_over_ini(pytester: pytest.Pytester):
    pytester.makepyfile(FORWARD_ONLY)
    pytester.makeini("[pytest]\ntracetensor_nan = all\n")
    run(pytester).assert_outcomes(failed=1)
    run(pytester, "--tracetensor-nan=grad").assert_outcomes(passed=1)
    pytester.makeini("[pytest]\ntracetensor_nan = off\n")
    run(pytester, "--tracetensor-nan=all").assert_outcomes(failed=1)
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["tracetensor: NaN check off (from ini option tracetensor_nan in *tox.ini)"])


def test_bad_values_are_usage_errors_saying_where_they_came_from(pytester: pytest.Pytester):
    pytester.makepyfile(CLEAN)
    result = run(pytester, "--tracetensor-nan=sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: tracetensor: invalid NaN check mode 'sometimes' from the command "
            "line (--tracetensor-nan); expected one of grad, all, off"
        ]
    )
    pytester.makeini("[pytest]\ntracetensor_nan = never\n")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: tracetensor: invalid NaN check mode 'never' from ini option "
            "tracetensor_nan in *tox.ini; expected one of grad, all, off"
        ]
    )


def test_plugin_and_nancheck_agree_on_the_modes():
    # the plugin keeps its own copy so that loading it imports no tracetensor
    from tracetensor import nancheck, pytest_plugin

    assert pytest_plugin.MODES == nancheck.MODES


def test_bad_marker_value_fails_that_test_naming_it(pytester: pytest.Pytester):
    pytester.makepyfile("""
        import pytest

        @pytest.mark.tracetensor_nan("sometimes")
        def test_marked():
            pass
    """)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*invalid NaN check mode 'sometimes' from the marker on *::test_marked;*"])


def test_help_and_markers_list_the_plugin(pytester: pytest.Pytester):
    result = run(pytester, "--help")
    result.stdout.fnmatch_lines(["*--tracetensor-nan=MODE*", "*tracetensor_nan (string)*"])
    result = run(pytester, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.tracetensor_allow_nan:*", "@pytest.mark.tracetensor_nan(mode):*"])


def test_a_test_failing_on_its_own_keeps_its_failure(pytester: pytest.Pytester):
    pytester.makepyfile(SQRT + "    assert y.item() == 3.0, 'wrong sum'\n")
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E       AssertionError: wrong sum",
            "*- tracetensor: non-finite values -*",
            "  op      sqrt 'gradients/sqrt*_grad' (backward, eager mode)",
            "FAILED *::test_sqrt - AssertionError: wrong sum*",
        ]
    )
    result.stdout.no_fnmatch_line("*Failed: tracetensor*")


def test_nan_gradient_in_a_thread_the_test_starts(pytester: pytest.Pytester):
    pytester.makepyfile("""
        import threading
        import tracetensor as tt

        def step():
            x = tt.tensor([0.0], requires_grad=True)
            x.sqrt().sum().backward()

        def test_thread():
            t = threading.Thread(target=step)
            t.start()
            t.join()
    """)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["  forward line  test_*.py:6 in step"])


def test_fixture_gives_gradient_summaries_per_step(pytester: pytest.Pytester):
    pytester.makepyfile("""
        import pytest
        import tracetensor as tt

        def test_training(tt_numerics):
            w = tt.tensor([0.5, -0.5], requires_grad=True)
            for _ in range(3):
                (w * w).sum().backward()
            (param,) = tt_numerics.params()
            grads = tt_numerics.grads(param)
            assert len(grads) == 3 and all(g.finite for g in grads)
            assert tt_numerics.findings == []

        @pytest.mark.tracetensor_allow_nan
        def test_observed_even_when_allowed(tt_numerics):
            x = tt.tensor([0.0], requires_grad=True)
            for _ in range(2):
                x.sqrt().sum().backward()
            (param,) = tt_numerics.params()
            assert [g.posinf for g in tt_numerics.grads(param)] == [1, 1]
            assert tt_numerics.ordered("grad")[0].op == "sqrt"
    """)
    run(pytester, "--tracetensor-nan=off").assert_outcomes(passed=2)


def test_setup_and_teardown_are_not_checked(pytester: pytest.Pytester):
    pytester.makepyfile("""
        import pytest
        import tracetensor as tt

        @pytest.fixture
        def nan_in_setup():
            x = tt.tensor([0.0], requires_grad=True)
            x.sqrt().sum().backward()
            yield
            x.sqrt().sum().backward()

        def test_uses_it(nan_in_setup):
            pass
    """)
    run(pytester).assert_outcomes(passed=1)


def test_xdist_workers_report_the_finding(pytester: pytest.Pytester):
    pytester.makepyfile(test_plugin_sqrt=SQRT, test_plugin_clean=CLEAN)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:asyncio", "-rf", "-n", "2")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*- tracetensor: non-finite values -*",
            f"  forward line  test_plugin_sqrt.py:{SQRT_LINE} in test_sqrt",
            "FAILED test_plugin_sqrt.py::test_sqrt - Failed: tracetensor: non-finite gradient from sqrt*",
        ]
    )


def test_graph_mode_session_run(pytester: pytest.Pytester):
    # the inner test runs in this process, whose default graph other tests may have used
    pytester.makepyfile(
        test_plugin_graph="""
        import numpy as np
        import tracetensor.graph as tf

        def test_graph():
            tf.reset_default_graph()
            x = tf.placeholder("float32", shape=(2,))
            w = tf.Variable(np.array([1.0, 1.0], dtype=np.float32), name="w")
            y = tf.reduce_sum(tf.sqrt(x * w))
            (g,) = tf.gradients(y, [w])
            with tf.Session() as sess:
                sess.run(tf.global_variables_initializer())
                sess.run(g, feed_dict={x: np.array([0.0, 4.0], dtype=np.float32)})
    """
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*tracetensor: non-finite gradient from SqrtGrad (backward) at test_plugin_graph.py:8 -> w: *",
            "  op      SqrtGrad 'gradients/Sqrt_grad' (backward, graph mode, run *)",
            "  flows into  w",
            "  forward line  test_plugin_graph.py:8 in test_graph",
            "      y = tf.reduce_sum(tf.sqrt(x * w))",
        ]
    )


def test_the_example_catches_log_of_underflowed_softmax(pytester: pytest.Pytester):
    examples = Path(__file__).resolve().parent.parent / "examples"
    for name in ("softmax_classifier.py", "test_softmax_log_nan.py"):
        (pytester.path / name).write_text((examples / name).read_text())
    pytester.syspathinsert()
    run(pytester, "--tracetensor-nan=off").assert_outcomes(passed=2)  # the bug is silent without the plugin
    result = run(pytester)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*non-finite gradient from log (backward) at softmax_classifier.py:22 -> fc.bias, fc.weight:*",
            "  line  softmax_classifier.py:22 in cross_entropy_naive",
            "      softmax*:0: *zero=1*",
            "      called from test_softmax_log_nan.py:* in test_training_updates_the_weights",
            "FAILED test_softmax_log_nan.py::test_training_updates_the_weights?cross_entropy_naive? - Failed: *",
        ]
    )


def test_tt_function_runs_are_checked(pytester: pytest.Pytester):
    # tt.function runs a traced graph (forward only): its NaN shows in `all` mode
    pytester.makepyfile(
        test_plugin_fn="""
        import tracetensor as tt

        @tt.function
        def logp(x):
            return x.log().sum()

        def test_fn():
            logp(tt.tensor([1.0, 4.0]))  # traces
            logp(tt.tensor([0.0, 4.0]))  # runs the graph
    """
    )
    run(pytester).assert_outcomes(passed=1)
    result = run(pytester, "--tracetensor-nan=all")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*tracetensor: non-finite value from Log (forward) at test_plugin_fn.py:5*",
            "  op      Log '*' (forward, graph mode, run *)",
            "  line  test_plugin_fn.py:5 in logp",
        ]
    )
