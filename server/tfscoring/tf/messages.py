"""The line of a TensorFlow error worth logging, for loading's and predicting's messages."""

from __future__ import annotations

import itertools


def first_line(err: BaseException) -> str:
    """The line of an error worth logging.  A TensorFlow 2 session error opens with "Graph execution error:"
    and the node's definition; what went wrong is the line after "Node: '<name>'"."""
    lines = [line.strip() for line in str(getattr(err, "message", "") or err).strip().splitlines()]
    if lines and lines[0].startswith("Graph execution error"):
        after_node = [line for before, line in itertools.pairwise(lines) if before.startswith("Node: ") and line]
        # Without a "Node:" line (a node TensorFlow inserted itself, such as the copy of a feed to the GPU):
        # the first line that is neither the node's definition nor the trace around it.
        reasons = [line for line in lines[1:] if line and not line.startswith(("Detected at node", "File ", "[["))]
        if after_node or reasons:
            return (after_node or reasons)[0]
    return lines[0] if lines and lines[0] else type(err).__name__
