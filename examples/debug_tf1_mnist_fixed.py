"""The classifier of debug_tf1_mnist_nan.py with the fix: cross-entropy computed from the
logits (`tf.nn.softmax_cross_entropy_with_logits`), which never takes log(0). Runs clean.

    python examples/debug_tf1_mnist_fixed.py --debug    # `run -f has_inf_or_nan` never stops
"""

from __future__ import annotations

from debug_tf1_mnist_nan import main

if __name__ == "__main__":
    main(stable=True)
