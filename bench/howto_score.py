"""The entry script of Azure ML's how-to "Deploy a deep learning model for inference with GPU".

Kept as it was written, for comparison: the baseline of the benchmark and the
proof that the model this project builds loads in it unchanged.  Only two
things differ from the how-to: TensorFlow is imported through its TF1
compatibility module (the how-to targeted TensorFlow 1.12), and the unused
`from azureml.core.model import Model` import is dropped (azureml-core is not
needed to serve).  Note what it lacks: any validation, so most bad requests
become a 500 from the server.
"""

import json
import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()


def init():
    global X, output, sess
    tf.reset_default_graph()
    model_root = os.getenv("AZUREML_MODEL_DIR")
    # the name of the folder in which to look for tensorflow model files
    tf_model_folder = "model"
    saver = tf.train.import_meta_graph(os.path.join(model_root, tf_model_folder, "mnist-tf.model.meta"))
    X = tf.get_default_graph().get_tensor_by_name("network/X:0")
    output = tf.get_default_graph().get_tensor_by_name("network/output/MatMul:0")

    sess = tf.Session()
    saver.restore(sess, os.path.join(model_root, tf_model_folder, "mnist-tf.model"))


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    # make prediction
    out = output.eval(session=sess, feed_dict={X: data})
    y_hat = np.argmax(out, axis=1)
    return y_hat.tolist()
