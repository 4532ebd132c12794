"""Request forms: decode a body against the model's interface and the limits, encode the outputs into the answer.

One codec per form (codec.py): howto.py, tfserving_rows.py, tfserving_columns.py, oip_json.py, oip_binary.py,
raw.py, npy.py, images.py; registry.py picks one for a request.  Shared: limits.py (what a request may hold),
tensors.py (each input's array validated), jsonforms.py, jsonbounds.py and decode.py (JSON bodies), image/ (the
image codec's parts), metadata.py (GET /score), swagger.py (/swagger.json, from the codecs' schemas).
"""
