"""Run exported models (.tflite via LiteRT, .onnx via ONNX Runtime, .keras via Keras) with
the same pre- and post-processing everywhere."""
