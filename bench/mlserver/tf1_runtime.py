"""The peer: the same TF1 meta-graph served by Seldon MLServer, through a custom runtime.

MLServer brings the V2 inference protocol and adaptive batching (max_batch_size,
max_batch_time in model-settings.json); this runtime only loads the graph like
server/tfscoring/tf/model.py does and turns a batch of rows into class ids.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow.compat.v1 as tf
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class TF1GraphRuntime(MLModel):
    async def load(self) -> bool:
        tf.disable_eager_execution()
        prefix = os.path.join(await get_model_uri(self._settings), "model", "mnist-tf.model")
        graph = tf.Graph()
        with graph.as_default():
            saver = tf.train.import_meta_graph(prefix + ".meta", clear_devices=True)
        threads = int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0"))
        config = tf.ConfigProto(intra_op_parallelism_threads=threads)
        self._session = tf.Session(graph=graph, config=config)
        saver.restore(self._session, prefix)
        x = graph.get_tensor_by_name("network/X:0")
        self._width = int(x.shape[1])
        self._run = self._session.make_callable(graph.get_tensor_by_name("network/output/MatMul:0"), [x])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        rows = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32).reshape(-1, self._width)
        class_ids = self._run(rows).argmax(axis=1)
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("class_ids", class_ids)])
