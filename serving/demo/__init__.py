"""The Streamlit demo's page logic (app.py at the repo root only calls `page.main`).

    settings.py   limits, runs-root resolution, DemoError
    catalog.py    find exported artifacts in run directories (manifest.json: format, size, parity)
    inference.py  upload checks, model facts, classify images, results JSON
    detection.py  score filter + NMS + box drawing for detection artifacts
    samples.py    the built-in sample images (samples/*.png)
    page.py       the Streamlit page itself

Everything except page.py is plain Python (numpy/Pillow/serving), testable without Streamlit.
Models run through `serving.load`, i.e. the exported .tflite/.onnx files themselves, the way
an edge device runs them - never through Keras or TensorFlow.
"""
