"""Mirror of `tensorflow.python` for the one name TF1 programs import from it:
`from tracetensor.graph.python import debug as tf_debug`."""
